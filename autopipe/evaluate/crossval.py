"""`autopipe evaluate`: score the folds' validation predictions against the raw labels, and across folds.

    results/DATASET/CONFIGURATION/fold_K/validation/summary.json   per case + mean, with definitions
    results/DATASET/CONFIGURATION/crossval/summary.json            pooled over folds and across folds
    results/DATASET/CONFIGURATION/crossval/postprocessing.json     minimum lesion volume kept by predict

References are the cohort's own labelsTr files (binarized with the plan's lesion labels), so every
number is measured in the scans' native space, in mm and ml.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from autopipe.cohort.dataset import DatasetSpec, load_dataset
from autopipe.errors import AutopipeError
from autopipe.evaluate.evaluation import (
    crossval_summary,
    evaluate_cases,
    format_table,
    pairs_from_folders,
    read_image,
)
from autopipe.evaluate.postprocessing import choose_min_lesion_volume
from autopipe.executor import Workers
from autopipe.files import write_json
from autopipe.layout import POSTPROCESSING_FILE, crossval_dir, validation_dir
from autopipe.paths import Workspace
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.predict.validation import prediction_name

log = logging.getLogger(__name__)


def evaluate_fold(spec: DatasetSpec, validation: Path, cases: list[str], lesion_labels: tuple[int, ...],
                  progress: bool = False, workers: Workers = 1) -> dict:
    """Metrics of one fold's validation predictions; written to validation/summary.json."""
    pairs = [(c, validation / prediction_name(spec, c), spec.label_path(c)) for c in cases]
    result = evaluate_cases(pairs, lesion_labels, progress=progress, workers=workers)
    path = write_json(validation / "summary.json", result)
    return {**result, "table": format_table(result), "path": path}


def evaluate_folders(predictions: Path, references: Path, lesion_labels: tuple[int, ...],
                     progress: bool = False, workers: Workers = 1) -> dict:
    """Metrics of every prediction in a folder against the same-named reference; summary.json beside them."""
    result = evaluate_cases(pairs_from_folders(predictions, references), lesion_labels, progress=progress,
                            workers=workers)
    path = write_json(predictions / "summary.json", result)
    return {**result, "table": format_table(result), "path": path}


def evaluate_crossvalidation(root: Path, workspace: Workspace, configurations: list[str] | None = None,
                             progress: bool = False, workers: Workers = 1) -> list[dict]:
    """For each configuration: every fold with complete validation predictions, pooled, and the postprocessing
    decision. Returns one {"configuration", "folds", "summary", "postprocessing", "text"} per configuration."""
    spec = load_dataset(root)
    plans_dir = workspace.plans_dir(spec.name)
    labels = load_plans(plans_dir / "plans.json").preprocessing.lesion_labels
    splits = load_splits(plans_dir / "splits_final.json")
    results_dir = workspace.results / spec.name
    names = configurations or sorted(d.name for d in results_dir.glob("*") if any(d.glob("fold_*/validation")))
    if not names:
        raise AutopipeError("no validation predictions to evaluate", where=str(results_dir),
                            fix="run `autopipe train FOLD` (it validates the fold's held-out cases when done)")
    return [_configuration(spec, results_dir / name, splits, labels, progress, workers) for name in names]


def _configuration(spec: DatasetSpec, folder: Path, splits: list[dict], labels: tuple[int, ...],
                   progress: bool, workers: Workers) -> dict:
    fold_results, cases = {}, []
    for k, split in enumerate(splits):
        validation = validation_dir(folder / f"fold_{k}")
        if not all((validation / prediction_name(spec, c)).is_file() for c in split["val"]):
            continue
        fold_results[k] = evaluate_fold(spec, validation, split["val"], labels, progress, workers)
        cases += [_arrays(c, validation / prediction_name(spec, c), spec.label_path(c), labels) for c in split["val"]]
    if not fold_results:
        raise AutopipeError(f"{folder.name}: no fold has validation predictions for all its held-out cases",
                            where=str(folder), fix="train and validate a fold first: `autopipe train 0`")
    missing = [k for k in range(len(splits)) if k not in fold_results]
    if missing:
        log.info("%s: folds %s are not validated yet; summarizing folds %s", folder.name,
                 ", ".join(map(str, missing)), ", ".join(map(str, fold_results)))
    summary = crossval_summary({k: {key: r[key] for key in ("cases", "mean")} for k, r in fold_results.items()})
    postprocessing = choose_min_lesion_volume(cases)
    out = crossval_dir(folder)
    write_json(out / "summary.json", {"configuration": folder.name, **summary})
    write_json(out / POSTPROCESSING_FILE, postprocessing)
    pooled = summary["pooled"]
    text = "\n".join([
        f"\n{folder.name}: {len(cases)} validation case(s) from fold(s) {', '.join(map(str, fold_results))}",
        *(fold_results[k]["table"] for k in fold_results),
        f"pooled: Dice {_stat(pooled, 'dice')}, VOE {_stat(pooled, 'voe')}, lesion F1 {_stat(pooled, 'lesion_f1')}, "
        f"per-lesion Dice {_stat(pooled, 'per_lesion_dice')}, HD95 {_stat(pooled, 'hd95_mm')} mm",
        f"postprocessing: {postprocessing['reason']}",
        f"wrote {out / 'summary.json'} and {out / POSTPROCESSING_FILE}",
    ])
    return {"configuration": folder.name, "folds": sorted(fold_results), "summary": summary,
            "postprocessing": postprocessing, "text": text}


def compare_configurations(summaries: list[dict]) -> str:
    """One row per configuration of evaluate_crossvalidation's results, pooled mean ± std: the numbers the PVL
    study compares between its 2D and 3D U-Nets."""
    keys = ("dice", "voe", "lesion_f1", "per_lesion_dice")
    lines = [f"{'configuration':<16} " + "  ".join(f"{title:<13}" for title in
                                                    ("Dice", "VOE", "lesion F1", "per-lesion Dice")), "-" * 78]
    for s in summaries:
        pooled = s["summary"]["pooled"]
        lines.append(f"{s['configuration']:<16} " + "  ".join(f"{_stat(pooled, k):<13}" for k in keys))
    return "\n".join(lines)


def _arrays(case_id: str, prediction: Path, reference: Path, labels: tuple[int, ...]
            ) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(predicted mask, reference lesion mask, spacing) of a case, for the postprocessing decision."""
    pred, _, _ = read_image(case_id, prediction)
    ref, zooms, _ = read_image(case_id, reference)
    return pred > 0, np.isin(ref, labels), zooms[:ref.ndim]


def _stat(aggregate: dict, key: str) -> str:
    values = aggregate.get(key, {})
    return f"{values.get('mean', float('nan')):.3f} ± {values.get('std', float('nan')):.3f}"
