"""The hand-function predictors of a fold: out-of-fold features, no leakage, clear errors, the pooled report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autopipe.cohort.dataset import load_dataset
from autopipe.cohort.image_io import Volume, read_volume, write_volume
from autopipe.errors import AutopipeError
from autopipe.layout import HELD_OUT_FILE, PREDICTOR_FILE, case_paths, fold_dir, hand_dir, template_space_prediction
from autopipe.models.hand_predictor import load_classifier
from autopipe.paths import Workspace
from autopipe.plan.configs import HandFunctionPlan
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import write_case_arrays
from autopipe.train.hand_fold import ready, segmentation_sources, train_hand_predictor
from tests.case_properties import case_properties

DATASET = "Dataset009_Hand"
FULL_SHAPE = (20, 24, 20)
AFFINE = np.array([[8.0, 0, 0, -80], [0, 8.0, 0, -112], [0, 0, 8.0, -60], [0, 0, 0, 1]])
CROP = [[2, 18], [2, 22], [2, 18]]
MOTOR = (10, 14, 12)  # full-grid voxel where a lesion makes the hand impaired
ELSEWHERE = (6, 7, 8)
SPLITS = [{"val": [f"c{i:02d}" for i in range(k * 4, k * 4 + 4)]} for k in range(3)]
for _split in SPLITS:
    _split["train"] = sorted({f"c{i:02d}" for i in range(12)} - set(_split["val"]))
PLAN = HandFunctionPlan(features=("lesion_map", "lesion_load", "lesion_count"), c_grid=(0.1, 1.0, 10.0),
                        class_weight="balanced", inner_folds=2, grid_mm=16.0, configuration="3d_fullres")


def _label(case: str) -> int:
    return int(case[1:]) % 2  # odd cases impaired: two of each class in every fold's held-out set


def _lesion_mask(case: str, where: tuple[int, int, int] | None = None) -> np.ndarray:
    mask = np.zeros(FULL_SHAPE, np.uint8)
    x, y, z = where or (MOTOR if _label(case) else ELSEWHERE)
    mask[x:x + 2, y:y + 2, z:z + 1 + int(case[1:]) % 3] = 1
    return mask


def _cropped(array: np.ndarray) -> np.ndarray:
    return array[tuple(slice(lo, hi) for lo, hi in CROP)]


@pytest.fixture
def cohort(tmp_path: Path) -> SimpleNamespace:
    root = tmp_path / "raw" / DATASET
    (root / "imagesTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1}, "numTraining": 12,
        "file_ending": ".nii.gz", "clinical": {"file": "clinical.csv"}}))
    cases = [f"c{i:02d}" for i in range(12)]
    _write_clinical(root, {c: _label(c) for c in cases})
    ws = Workspace(raw=tmp_path / "raw", plans=tmp_path / "plans", preprocessed=tmp_path / "pre",
                   results=tmp_path / "results")
    ws.plans_dir(DATASET).mkdir(parents=True)
    (ws.plans_dir(DATASET) / "splits_final.json").write_text(json.dumps(SPLITS))
    folder = ws.preprocessed / DATASET / "template_8mm"
    folder.mkdir(parents=True)
    for case in cases:
        truth = _cropped(_lesion_mask(case))
        write_case_arrays(case_paths(folder, case)[0], truth[None].astype(np.float32), np.ones_like(truth), truth, 0)
        properties = case_properties(case, full_shape=FULL_SHAPE, affine=AFFINE, crop_box=CROP)
        case_paths(folder, case)[1].write_text(json.dumps(properties.to_json()))
    for k, split in enumerate(SPLITS):  # each fold's network "predicts" its held-out cases: the truth here
        folder_k = fold_dir(ws, DATASET, "3d_fullres", str(k))
        folder_k.mkdir(parents=True)
        (folder_k / "checkpoint_final.pt").write_bytes(b"")
        for case in split["val"]:
            write_volume(template_space_prediction(folder_k, case), Volume(_lesion_mask(case), AFFINE))
    spec = load_dataset(root)
    plans = SimpleNamespace(hand_function=PLAN, configurations={"3d_fullres": None, "2d": None},
                            preprocessing=SimpleNamespace(space="template"))

    def fold(k: int) -> Fold:
        return Fold(spec, plans, folder, "digest", str(k), tuple(SPLITS[k]["train"]), tuple(SPLITS[k]["val"]))

    return SimpleNamespace(root=root, ws=ws, fold=fold, cases=cases, folder=folder)


def _write_clinical(root: Path, labels: dict[str, int | None]) -> None:
    rows = ["case_id,hand_function"] + [f"{c},{'' if v is None else ('impaired' if v else 'good')}"
                                        for c, v in labels.items()]
    (root / "clinical.csv").write_text("\n".join(rows) + "\n")


def _classifiers(cohort: SimpleNamespace, k: int) -> dict:
    return json.loads((hand_dir(cohort.ws, DATASET, str(k)) / PREDICTOR_FILE).read_text())["classifiers"]


def _held_out(cohort: SimpleNamespace, k: int) -> dict:
    return json.loads((hand_dir(cohort.ws, DATASET, str(k)) / HELD_OUT_FILE).read_text())["cases"]


def test_sources_are_the_folds_that_held_each_case_out():
    sources = segmentation_sources(SPLITS, 0)
    for case, source in sources.items():
        assert case in SPLITS[source]["val"] and case not in SPLITS[source]["train"]
    assert {c for c, s in sources.items() if s == 0} == set(SPLITS[0]["val"])
    held_twice = [dict(SPLITS[0]), dict(SPLITS[1]), {"train": SPLITS[2]["train"], "val": [*SPLITS[2]["val"], "c00"]}]
    with pytest.raises(AutopipeError, match="c00 is held out by 2 folds"):
        segmentation_sources(held_twice, 1)
    never = [dict(SPLITS[0]), dict(SPLITS[1]), {"train": SPLITS[2]["train"], "val": SPLITS[2]["val"][1:]}]
    with pytest.raises(AutopipeError, match="held out by 0 folds"):
        segmentation_sources(never, 0)


def test_a_predictor_waits_for_every_fold_that_segments_its_subjects(cohort):
    assert ready(cohort.fold(0), cohort.ws, PLAN) == (True, [])
    template_space_prediction(fold_dir(cohort.ws, DATASET, "3d_fullres", "2"), "c09").unlink()
    assert ready(cohort.fold(0), cohort.ws, PLAN) == (False, ["2"])
    checkpoint = fold_dir(cohort.ws, DATASET, "3d_fullres", "1") / "checkpoint_final.pt"
    os.utime(checkpoint, (checkpoint.stat().st_mtime + 60,) * 2)  # fold 1 retrained after its predictions
    assert ready(cohort.fold(0), cohort.ws, PLAN) == (False, ["1", "2"])


def test_training_features_never_come_from_a_model_that_saw_the_subject(cohort):
    clean = train_hand_predictor(cohort.fold(0), cohort.ws, progress=False)
    for case in SPLITS[0]["train"]:
        holder = next(k for k, s in enumerate(SPLITS) if case in s["val"])
        assert Path(clean["segmentations"][case]).parent.parent.parent.name == f"fold_{holder}"
    for case in SPLITS[0]["val"]:
        assert Path(clean["segmentations"][case]).parent.parent.parent.name == "fold_0"
    # fold 0's network trained on these subjects: an in-sample prediction of them must never be read
    for case in SPLITS[0]["train"]:
        write_volume(template_space_prediction(fold_dir(cohort.ws, DATASET, "3d_fullres", "0"), case),
                     Volume(np.ones(FULL_SHAPE, np.uint8), AFFINE))
    train_hand_predictor(cohort.fold(0), cohort.ws, progress=False)
    assert _classifiers(cohort, 0) == clean["classifiers"]


def test_held_out_labels_and_segmentations_do_not_reach_the_classifiers(cohort):
    train_hand_predictor(cohort.fold(1), cohort.ws, progress=False)
    before, scores = _classifiers(cohort, 1), _held_out(cohort, 1)
    labels = {c: _label(c) for c in cohort.cases}
    labels.update({c: 1 - _label(c) for c in SPLITS[1]["val"]})  # held-out labels flipped
    _write_clinical(cohort.root, labels)
    for case in SPLITS[1]["val"]:  # held-out predicted and true masks changed
        write_volume(template_space_prediction(fold_dir(cohort.ws, DATASET, "3d_fullres", "1"), case),
                     Volume(_lesion_mask(case, ELSEWHERE), AFFINE))
        truth = _cropped(_lesion_mask(case, ELSEWHERE))
        write_case_arrays(case_paths(cohort.folder, case)[0], truth[None].astype(np.float32), np.ones_like(truth),
                          truth, 0)
    train_hand_predictor(cohort.fold(1), cohort.ws, progress=False)
    assert _classifiers(cohort, 1) == before
    after = _held_out(cohort, 1)
    assert all(after[c]["label"] == 1 - scores[c]["label"] for c in SPLITS[1]["val"])
    impaired = [c for c in SPLITS[1]["val"] if _label(c)]
    assert all(after[c]["predicted"] < scores[c]["predicted"] for c in impaired)  # lesion moved out of the region


def test_lesion_location_is_learned_and_stored_in_feature_units(cohort):
    predictor = train_hand_predictor(cohort.fold(2), cohort.ws, progress=False)
    scores = _held_out(cohort, 2)
    for variant in ("predicted", "oracle"):
        impaired = [scores[c][variant] for c in SPLITS[2]["val"] if _label(c)]
        good = [scores[c][variant] for c in SPLITS[2]["val"] if not _label(c)]
        assert min(impaired) > max(good)
    model, grid, cells, _ = load_classifier(hand_dir(cohort.ws, DATASET, "2") / PREDICTOR_FILE)
    weights = dict(zip(model.names, model.weights, strict=True))
    motor_cell = np.ravel_multi_index(tuple(v // 2 for v in MOTOR), grid.shape)
    assert f"cell_{motor_cell}" in weights and weights[f"cell_{motor_cell}"] == max(
        w for n, w in weights.items() if n.startswith("cell_"))
    assert predictor["classifiers"]["baseline"]["names"] == ["lesion_load_ml"]


def test_one_class_in_the_training_subjects_is_a_clear_error(cohort):
    _write_clinical(cohort.root, {c: 0 if c not in SPLITS[0]["val"] else _label(c) for c in cohort.cases})
    with pytest.raises(AutopipeError, match="fold 0's training cases hold only good subjects") as error:
        train_hand_predictor(cohort.fold(0), cohort.ws, progress=False)
    assert "clinical.csv" in error.value.where


def test_one_class_held_out_is_a_warning_and_unlabelled_subjects_are_left_out(cohort, caplog):
    labels: dict[str, int | None] = {c: _label(c) for c in cohort.cases}
    labels.update({"c00": None, "c02": None})  # fold 0's held-out good subjects lose their labels
    _write_clinical(cohort.root, labels)
    with caplog.at_level(logging.WARNING, logger="autopipe"):
        predictor = train_hand_predictor(cohort.fold(0), cohort.ws, progress=False)
    assert predictor["left_out_unlabelled"] == ["c00", "c02"]
    assert sorted(_held_out(cohort, 0)) == ["c01", "c03"]
    assert "without a label" in caplog.text and "ROC AUC is undefined" in caplog.text


def test_the_report_pools_the_folds_and_finds_the_generating_region(cohort):
    from autopipe.evaluate.hand_function import GENERATING_REGION, evaluate_hand_function

    region = np.zeros(FULL_SHAPE, np.uint8)
    region[8:14, 12:18, 10:16] = 1
    write_volume(cohort.root / GENERATING_REGION, Volume(region, AFFINE))
    for k in range(3):
        train_hand_predictor(cohort.fold(k), cohort.ws, progress=False)
    summary = evaluate_hand_function(cohort.root, cohort.ws, DATASET, resamples=200)
    pooled = summary["models"]["predicted"]["pooled"]
    assert pooled["n"] == 12 and pooled["positives"] == 6 and pooled["roc_auc"] == 1.0
    assert set(summary["models"]) == {"predicted", "oracle", "baseline"}
    share = summary["coefficient_map"]["predicted"]["weight_in_generating_region"]
    assert share["positive"] > 0.9 > share["chance"]
    out = hand_dir(cohort.ws, DATASET)
    for name in ("summary.json", "calibration.png", "coefficients_mean.nii.gz", "coefficients_mean.png",
                 "fold_0/coefficients.nii.gz", "fold_0/coefficients_oracle.png"):
        assert (out / name).is_file(), name
    mean = read_volume(out / "coefficients_mean.nii.gz")
    assert np.allclose(mean.affine[:3, :3], np.diag([16.0] * 3))
    peak = np.unravel_index(np.argmax(mean.data), mean.data.shape)
    world = mean.affine[:3, :3] @ np.array(peak) + mean.affine[:3, 3]
    motor_world = AFFINE[:3, :3] @ np.array(MOTOR) + AFFINE[:3, 3]
    assert np.all(np.abs(world - motor_world) <= 8.0)  # the map peaks where the lesions that drive it are
    assert "predicted" in summary["text"] and "generating region" in summary["text"]
    comparisons = summary["comparisons"]
    assert set(comparisons) == {"predicted vs oracle", "predicted vs baseline", "oracle vs baseline"}
    assert all(c["n"] == 12 for c in comparisons.values())
    oracle = summary["models"]["oracle"]["pooled"]["accuracy"]
    assert comparisons["predicted vs oracle"]["accuracy_difference"] == pytest.approx(pooled["accuracy"] - oracle)
    assert "predicted vs oracle: accuracy" in summary["text"]


def test_a_new_subject_is_scored_by_every_fold_on_its_template_space_mask(cohort, tmp_path):
    from autopipe.models.lesion_features import feature_vector
    from autopipe.predict.export import export_template_mask
    from autopipe.predict.hand_function import hand_probability, load_hand_predictors, write_hand_csv

    for k in range(3):
        train_hand_predictor(cohort.fold(k), cohort.ws, progress=False)
    predictors = load_hand_predictors(cohort.ws, DATASET)
    assert [p.fold for p in predictors] == ["0", "1", "2"]
    properties = read_properties(case_paths(cohort.folder, "c05")[1])
    probability = _cropped(_lesion_mask("c05")).astype(np.float32) * 0.9  # the U-Net's output on the grid
    written = read_volume(export_template_mask(probability, properties, tmp_path / "c05.nii.gz"))
    assert np.array_equal(written.data, _lesion_mask("c05")) and np.allclose(written.affine, AFFINE)
    expected = np.mean([p.classifier.probability(feature_vector(_lesion_mask("c05"), p.grid, p.cells,
                                                                p.features)[0])[0] for p in predictors])
    assert hand_probability(probability, properties, predictors) == pytest.approx(expected)
    assert expected > 0.5
    csv = write_hand_csv(tmp_path / "hand_function.csv", {"c05": expected}, ["0", "1", "2"], "3d_fullres")
    assert csv.read_text().splitlines()[1].startswith(f"c05,{expected:.4f},impaired,0 1 2,3d_fullres")
