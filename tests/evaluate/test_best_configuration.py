"""Which configuration predict uses: the decision on hand-made scores, its paired test against scipy, and the
whole path on a tiny cohort with made-up validation predictions (every configuration and the 2d + 3d_fullres
ensemble scored on the same cases, the decision file, and predict following it)."""

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from autopipe.cohort.image_io import read_volume
from autopipe.errors import AutopipeError
from autopipe.evaluate.best_configuration import (
    choose_best_configuration,
    decide,
    format_decision,
    pooled_scores,
    wilcoxon,
)
from autopipe.layout import ENSEMBLE, best_configuration, fold_dir, validation_dir, validation_probability
from autopipe.models.checkpoint import save_checkpoint
from autopipe.paths import Workspace
from autopipe.plan.planner import plan_dataset
from autopipe.plan.splits import load_splits
from autopipe.predict.export import write_like, write_probability
from autopipe.predict.new_cases import choose_configuration, load_members, min_lesion_volume
from tests.tiny_cohort import make_tiny_cohort


def test_the_highest_mean_dice_wins_with_the_paired_evidence():
    a = {"c1": (0.9, 1.0), "c2": (0.8, 1.0), "c3": (0.7, 0.5), "c4": (0.6, 0.5), "c5": (0.95, 1.0)}
    b = {"c1": (0.8, 1.0), "c2": (0.7, 0.5), "c3": (0.75, 0.5), "c4": (0.5, 0.5), "c5": (0.85, 1.0)}
    decision = decide({"2d": b, "3d_fullres": a})
    assert decision["chosen"] == "3d_fullres" and decision["runner_up"] == "2d"
    assert decision["candidates"]["3d_fullres"]["dice"] == pytest.approx(0.79)
    assert decision["candidates"]["2d"]["lesion_f1"] == pytest.approx(0.7)
    paired = decision["paired"]
    assert paired["dice_differences"] == pytest.approx({"c1": 0.1, "c2": 0.1, "c3": -0.05, "c4": 0.1, "c5": 0.1})
    assert (paired["wins"], paired["losses"]) == (4, 1) and paired["mean_difference"] == pytest.approx(0.07)
    assert paired["p"] == pytest.approx(scipy.stats.wilcoxon([0.1, 0.1, -0.05, 0.1, 0.1]).pvalue)
    assert "not a significant difference" in decision["reason"]  # 5 cases cannot make p < 0.05 here


def test_a_dice_tie_goes_to_lesion_f1_then_to_the_simpler_candidate():
    same_dice = {"c1": (0.8, 0.5), "c2": (0.6, 0.5)}
    better_f1 = {"c1": (0.8, 1.0), "c2": (0.6, 1.0)}
    assert decide({"3d_fullres": same_dice, ENSEMBLE: better_f1})["chosen"] == ENSEMBLE
    decision = decide({ENSEMBLE: same_dice, "2d": same_dice, "3d_fullres": same_dice})
    assert decision["chosen"] == "3d_fullres" and decision["runner_up"] == "2d"
    assert "a tie" in decision["reason"] and decision["paired"]["p"] == 1.0


def test_one_candidate_and_bad_input():
    only = decide({"3d_fullres": {"c1": (0.5, math.nan)}})
    assert only["chosen"] == "3d_fullres" and only["paired"] is None and "only configuration" in only["reason"]
    with pytest.raises(ValueError, match="same cases"):
        decide({"2d": {"c1": (0.5, 0.5)}, "3d_fullres": {"c2": (0.5, 0.5)}})
    with pytest.raises(ValueError, match="no candidate"):
        decide({})
    none = wilcoxon([0.0, 0.0])
    assert (none["p"], none["n"]) == (1.0, 0) and math.isnan(none["statistic"])


@pytest.fixture
def validated(tmp_path):
    """A tiny cohort, planned, with every fold's 'validation' of 2d and 3d_fullres made up from the labels: 3d_fullres
    finds each lesion exactly, 2d adds a false lesion to every case, and their mean probability (the ensemble)
    keeps 3d_fullres's certainty where 2d is unsure. One untrained checkpoint per fold makes them 'trained'."""
    root = make_tiny_cohort(tmp_path / "raw_data" / "Dataset001_Best", n_cases=5, kspace=False, clinical=False)
    ws = Workspace.from_environment(tmp_path)
    plan_dataset(root, ws, device="cpu", memory_gb=8, throughput_gflops=100.0, progress=False)
    for k, split in enumerate(load_splits(ws.plans_dir(root.name) / "splits_final.json")):
        for configuration, (extra, certainty) in {"3d_fullres": (0.0, 0.9), "2d": (0.6, 0.4)}.items():
            folder = fold_dir(ws, root.name, configuration, str(k))
            save_checkpoint(folder / "checkpoint_final.pt", {"kind": "segmentation", "epoch": 1, "network": {},
                                                            "network_kwargs": {}})
            for case in split["val"]:
                label = root / "labelsTr" / f"{case}.nii.gz"
                probability = read_volume(label).data.astype(np.float32) * certainty + 0.05
                probability[:3, :3, :3] = extra  # a false lesion where 2d is sure
                write_probability(validation_probability(folder, case), probability)
                write_like(validation_dir(folder) / f"{case}.nii.gz", (probability >= 0.5).astype(np.uint8), label,
                           np.uint8)
    return root, ws


def test_evaluate_writes_the_decision_and_predict_follows_it(validated):
    root, ws = validated
    decision = choose_best_configuration(root, ws)
    assert set(decision["candidates"]) == {"3d_fullres", "2d", ENSEMBLE}
    # 3d_fullres: every lesion found, nothing else; 2d: one false lesion per case; the ensemble: mean 0.325 there
    assert decision["candidates"]["2d"]["dice"] < decision["candidates"]["3d_fullres"]["dice"]
    assert decision["chosen"] == "3d_fullres" and decision["runner_up"] == ENSEMBLE
    assert decision["candidates"][ENSEMBLE]["dice"] == pytest.approx(decision["candidates"]["3d_fullres"]["dice"])
    assert json.loads(best_configuration(ws, root.name).read_text())["chosen"] == "3d_fullres"
    assert "chosen: 3d_fullres" in format_decision(decision)
    assert choose_configuration(ws, root.name, None, ["3d_fullres", "2d"]) == "3d_fullres"
    assert min_lesion_volume(ws, root.name, "3d_fullres") == decision["postprocessing"]["min_lesion_volume_mm3"]

    written = json.loads(best_configuration(ws, root.name).read_text())
    best_configuration(ws, root.name).write_text(json.dumps({**written, "chosen": ENSEMBLE}))
    assert choose_configuration(ws, root.name, None, ["3d_fullres", "2d"]) == ENSEMBLE
    with pytest.raises(AutopipeError, match="does not build as a PlainConvUNet"):
        load_members(ws, root.name, ENSEMBLE, None, torch.device("cpu"))  # both members are asked for


def test_the_ensemble_is_chosen_when_it_wins_and_predict_follows_it(validated):
    """3d_fullres now also adds a false lesion (in the opposite corner from 2d's): each alone keeps its own false
    lesion, while their mean keeps the lesions 3d_fullres is sure of and drops both false ones."""
    root, ws = validated
    splits = load_splits(ws.plans_dir(root.name) / "splits_final.json")
    for k, split in enumerate(splits):
        folder = fold_dir(ws, root.name, "3d_fullres", str(k))
        for case in split["val"]:
            label = read_volume(root / "labelsTr" / f"{case}.nii.gz").data
            probability = label.astype(np.float32) * 0.9 + 0.05
            probability[-3:, -3:, -3:] = np.where(label[-3:, -3:, -3:] > 0, 0.95, 0.6)
            write_probability(validation_probability(folder, case), probability)
            write_like(validation_dir(folder) / f"{case}.nii.gz", (probability >= 0.5).astype(np.uint8),
                       root / "labelsTr" / f"{case}.nii.gz", np.uint8)
    decision = choose_best_configuration(root, ws)
    dice = {name: candidate["dice"] for name, candidate in decision["candidates"].items()}
    assert decision["chosen"] == ENSEMBLE and decision["runner_up"] == "3d_fullres", dice
    assert dice[ENSEMBLE] > dice["3d_fullres"] > dice["2d"]
    assert decision["paired"]["wins"] > 0 and decision["paired"]["losses"] == 0
    assert choose_configuration(ws, root.name, None, ["3d_fullres", "2d"]) == ENSEMBLE


def test_no_decision_without_a_configuration_validated_on_every_fold(validated):
    root, ws = validated
    for path in (ws.results / root.name / "2d" / "fold_0" / "validation").glob("*.nii.gz"):
        path.unlink()
    decision = choose_best_configuration(root, ws)
    assert set(decision["candidates"]) == {"3d_fullres"}  # 2d misses fold 0, so there is no ensemble either
    for path in (ws.results / root.name / "3d_fullres" / "fold_1" / "validation" / "probabilities").glob("*.npz"):
        path.unlink()
    assert choose_best_configuration(root, ws) is None


def test_scores_pool_only_the_folds_asked_for(validated):
    root, ws = validated
    splits = load_splits(ws.plans_dir(root.name) / "splits_final.json")
    for path in (ws.results / root.name / "2d" / "fold_0" / "validation").glob("*.nii.gz"):
        path.unlink()  # 2d is not validated on fold 0, which is not asked for
    pooled = pooled_scores(root, ws, folds=[1, 2])
    assert set(pooled["scores"]) == {"3d_fullres", "2d", ENSEMBLE}
    assert sorted(pooled["scores"]["2d"]) == sorted(splits[1]["val"] + splits[2]["val"])
    assert set(pooled_scores(root, ws, folds=[0, 1])["scores"]) == {"3d_fullres"}
