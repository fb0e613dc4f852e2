"""Which configuration `autopipe predict` uses, decided on the cross-validation predictions and kept with its evidence.

Candidates: every planned configuration whose folds have all validated their held-out cases, and, when 2d and
3d_fullres both have, their ensemble (the mean of their lesion probabilities on each scan, thresholded at 0.5,
as nnU-Net ensembles). Every candidate is scored on the same pooled held-out cases against the raw labels. The
highest mean Dice wins; a tie (within TIE_DICE) goes to the higher mean lesion F1, then to the simpler candidate.
Beside nnU-Net's numbers, results/DATASET/best_configuration.json records how sure the choice is: each case's
Dice difference from the runner-up and a two-sided Wilcoxon signed-rank test of them, and the postprocessing
decided on the chosen candidate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.stats

from autopipe.cohort.dataset import DatasetSpec, load_dataset
from autopipe.evaluate.evaluation import read_image
from autopipe.evaluate.metrics import dice, lesion_detection
from autopipe.evaluate.postprocessing import choose_min_lesion_volume
from autopipe.files import write_json
from autopipe.layout import (
    ENSEMBLE,
    ENSEMBLE_MEMBERS,
    best_configuration,
    fold_dir,
    members,
    validation_dir,
    validation_probability,
)
from autopipe.paths import Workspace
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.predict.export import read_probability
from autopipe.predict.validation import prediction_name
from autopipe.preprocess.labels import threshold_interpolated

TIE_DICE = 1e-4  # mean Dice differences below this are ties
ORDER = ("3d_fullres", "2d")  # the simpler candidate first when everything ties (an ensemble costs both)

Scores = dict[str, tuple[float, float]]  # case -> (Dice, lesion F1)


def decide(scores: dict[str, Scores]) -> dict:
    """The choice among candidates scored on the same cases: {"chosen", "runner_up", "reason", "candidates",
    "paired"}. A pure function of the per-case scores (hand-checked in the tests)."""
    if not scores:
        raise ValueError("no candidate to choose from")
    cases = sorted(next(iter(scores.values())))
    if any(sorted(s) != cases for s in scores.values()):
        raise ValueError("every candidate must be scored on the same cases")
    means = {name: {"dice": float(np.mean([s[c][0] for c in cases])),
                    "lesion_f1": _nanmean([s[c][1] for c in cases]), "cases": len(cases)}
             for name, s in scores.items()}

    ordered = _ranked(means)
    chosen = ordered[0]
    decision = {"chosen": chosen, "members": list(members(chosen)), "candidates": means,
                "runner_up": ordered[1] if len(ordered) > 1 else None}
    if len(ordered) == 1:
        decision["reason"] = f"{chosen} is the only configuration validated on every fold"
        decision["paired"] = None
        return decision
    runner = ordered[1]
    differences = [scores[chosen][c][0] - scores[runner][c][0] for c in cases]
    paired = {"runner_up": runner, "dice_differences": dict(zip(cases, differences, strict=True)),
              "mean_difference": float(np.mean(differences)), "wins": sum(d > 0 for d in differences),
              "losses": sum(d < 0 for d in differences), **wilcoxon(differences)}
    decision["paired"] = paired
    tie = abs(means[chosen]["dice"] - means[runner]["dice"]) < TIE_DICE
    decision["reason"] = (
        f"{chosen}: mean Dice {means[chosen]['dice']:.4f} against {means[runner]['dice']:.4f} for {runner}"
        + (f" (a tie: decided by lesion F1 {means[chosen]['lesion_f1']:.3f} against "
           f"{means[runner]['lesion_f1']:.3f}, then by simplicity)" if tie else "")
        + f" on {len(cases)} held-out case(s); better on {paired['wins']}, worse on {paired['losses']}, "
        f"Wilcoxon signed-rank p = {_p(paired['p'])}"
        + ("" if paired["p"] < 0.05 else " (not a significant difference: either would do)"))
    return decision


def _ranked(means: dict[str, dict]) -> list[str]:
    """Best first: the highest mean Dice; among those within TIE_DICE of it, the highest lesion F1, then the
    simplest."""
    left, ordered = dict(means), []
    while left:
        top = max(m["dice"] for m in left.values())
        tied = [name for name, m in left.items() if top - m["dice"] < TIE_DICE]
        best = max(tied, key=lambda name: (_or_minus_inf(left[name]["lesion_f1"]), -_complexity(name)))
        ordered.append(best)
        del left[best]
    return ordered


def wilcoxon(differences: list[float]) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired differences: {"statistic", "p", "n"} (p = 1 when every
    difference is 0, as no test can tell them apart)."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return {"test": "Wilcoxon signed-rank, two-sided", "statistic": math.nan, "p": 1.0, "n": 0}
    result = scipy.stats.wilcoxon(nonzero)
    return {"test": "Wilcoxon signed-rank, two-sided", "statistic": float(result.statistic), "p": float(result.pvalue),
            "n": len(nonzero)}


def pooled_scores(root: Path, workspace: Workspace, folds: list[int] | None = None) -> dict[str, dict]:
    """{"scores": candidate -> case -> (Dice, lesion F1), "masks": candidate -> case -> (prediction, reference,
    spacing)} over the held-out cases of `folds` (all of splits_final.json by default), for every configuration
    validated on each of them and the 2d + 3d_fullres ensemble when both are; empty when none is."""
    spec = load_dataset(root)
    plans = load_plans(workspace.plans_dir(spec.name) / "plans.json")
    splits = load_splits(workspace.plans_dir(spec.name) / "splits_final.json")
    chosen = {k: splits[k] for k in (range(len(splits)) if folds is None else folds)}
    complete = [c for c in plans.configurations if _validated(workspace, spec, c, chosen)]
    if not complete:
        return {"scores": {}, "masks": {}}
    candidates = [*sorted(complete, key=_complexity)]
    if all(m in complete for m in ENSEMBLE_MEMBERS):
        candidates.append(ENSEMBLE)
    labels = plans.preprocessing.lesion_labels
    masks = {c: _pooled_masks(workspace, spec, c, chosen, labels) for c in candidates}
    scores = {c: {case: (dice(pred, ref), lesion_detection(pred, ref, spacing)["f1"])
                  for case, (pred, ref, spacing) in cases.items()} for c, cases in masks.items()}
    return {"scores": scores, "masks": masks}


def choose_best_configuration(root: Path, workspace: Workspace) -> dict | None:
    """Score every candidate on the pooled cross-validation predictions, decide, choose postprocessing for the
    chosen one and write best_configuration.json; None when no configuration has validated every fold."""
    spec = load_dataset(root)
    pooled = pooled_scores(root, workspace)
    if not pooled["scores"]:
        return None
    masks = pooled["masks"]
    decision = decide(pooled["scores"])
    decision["postprocessing"] = choose_min_lesion_volume(list(masks[decision["chosen"]].values()))
    decision["definitions"] = {
        "candidates": "every configuration validated on every fold, and the mean of the 2d and 3d_fullres "
                      "probabilities (thresholded at 0.5) when both are",
        "dice": "mean over the pooled held-out cases of 2|P∩R| / (|P| + |R|), 1 when both are empty",
        "lesion_f1": "mean lesion F1 (26-connected lesions, detected when they share a voxel)",
        "choice": f"highest mean Dice; within {TIE_DICE} the higher lesion F1, then the simpler candidate"}
    write_json(best_configuration(workspace, spec.name), decision)
    return decision


def format_decision(decision: dict) -> str:
    """The candidates' table and the choice with its reason, as `autopipe evaluate` prints them."""
    lines = [f"{'candidate':<24}{'Dice':>8}{'lesion F1':>11}{'cases':>7}", "-" * 50]
    for name, m in decision["candidates"].items():
        lines.append(f"{name:<24}{m['dice']:>8.4f}{m['lesion_f1']:>11.3f}{m['cases']:>7}"
                     + ("   <- chosen" if name == decision["chosen"] else ""))
    lines.append(f"chosen: {decision['reason']}; postprocessing: {decision['postprocessing']['reason']}")
    return "\n".join(lines)


def _validated(workspace: Workspace, spec: DatasetSpec, configuration: str, splits: dict[int, dict]) -> bool:
    """Every fold has the mask and the probability of each of its held-out cases."""
    for k, split in splits.items():
        folder = fold_dir(workspace, spec.name, configuration, str(k))
        if not all((validation_dir(folder) / prediction_name(spec, c)).is_file()
                   and validation_probability(folder, c).is_file() for c in split["val"]):
            return False
    return True


def _pooled_masks(workspace: Workspace, spec: DatasetSpec, candidate: str, splits: dict[int, dict],
                  labels: tuple[int, ...]) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """case -> (predicted mask, reference lesion mask, spacing) over the given folds' held-out cases."""
    pooled = {}
    for k, split in splits.items():
        for case in split["val"]:
            reference, spacing, _ = read_image(case, spec.label_path(case))
            folders = [fold_dir(workspace, spec.name, m, str(k)) for m in members(candidate)]
            if candidate == ENSEMBLE:
                mean = np.mean([read_probability(validation_probability(f, case)) for f in folders], axis=0)
                prediction = threshold_interpolated(mean).astype(bool)
            else:
                prediction = read_image(case, validation_dir(folders[0]) / prediction_name(spec, case))[0] > 0
            pooled[case] = (prediction, np.isin(reference, labels), spacing[:reference.ndim])
    return pooled


def _complexity(name: str) -> int:
    return len(ORDER) + 1 if name == ENSEMBLE else ORDER.index(name) if name in ORDER else len(ORDER)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _or_minus_inf(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _p(p: float) -> str:
    return f"{p:.3g}"
