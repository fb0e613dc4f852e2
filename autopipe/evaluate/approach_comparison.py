"""The MTLRS paper's table: reconstruction quality and lesion segmentation of every approach, per subject.

For each fold, every validation case with k-space is reconstructed by the classical methods (zero-filled,
CG-SENSE, compressed sensing) and by every trained approach (pretrained, sequential, end_to_end, joint,
mtlrs), which also segment it. Per subject (the case's slab of slices, stacked in 3D):
    SSIM, PSNR, NMSE   on magnitude images, fastMRI's definitions (autopipe.evaluate.image_quality)
    Dice, per-lesion Dice   of the lesion classes (most probable class a lesion class) against the slices'
                            labels, lesions being 26-connected components of the stack (autopipe.evaluate.metrics)
    Dice per class, combined   where the cohort labels tissue too: each foreground class's Dice and their mean
and, across subjects, Spearman's rho (with its p-value) between SSIM and per-lesion Dice, and a paired
Wilcoxon signed-rank test of every approach against MTLRS.

    results/DATASET/reconstruction/comparison/fold_K.json     per subject and per method, seconds per slice
    results/DATASET/reconstruction/comparison/summary.json    pooled over the folds, with the definitions
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from autopipe.errors import AutopipeError
from autopipe.evaluate.image_quality import IMAGE_QUALITY_DEFINITIONS, image_quality
from autopipe.evaluate.metrics import METRIC_DEFINITIONS, dice, lesion_detection
from autopipe.files import number, read_json, write_json
from autopipe.layout import CS, CS_FILE, comparison_dir, kspace_dir, slice_model_dir
from autopipe.models.slice_models import planned_models
from autopipe.paths import Workspace
from autopipe.predict.slice_inference import (
    CLASSICAL,
    available_approaches,
    case_reference,
    class_map,
    load_fold_models,
    process_case,
)
from autopipe.preprocess.folds import Fold, load_fold
from autopipe.preprocess.kspace_slices import cases_with_kspace
from autopipe.progress import Progress

log = logging.getLogger(__name__)

RECONSTRUCTION_METRICS = ("ssim", "psnr", "nmse")
SEGMENTATION_METRICS = ("dice", "per_lesion_dice")
DEFINITIONS = {
    **{k: IMAGE_QUALITY_DEFINITIONS[k] for k in RECONSTRUCTION_METRICS},
    "dice": METRIC_DEFINITIONS["dice"] + " Of the lesion classes, over the subject's stack of slices; a pixel is "
                                         "lesion where its most probable class is a lesion class (probability > 0.5 "
                                         "with background and lesion alone).",
    "dice_CLASS": "Dice of one class (most probable class = CLASS) over the subject's stack of slices; nan where "
                  "the class is neither in the reference nor predicted.",
    "dice_combined": "mean of the per-class Dice over every foreground class (tissue and lesion): the paper's "
                     "'Dice for combined brain tissue and white matter lesion segmentation'.",
    "wilcoxon_vs_mtlrs": "paired Wilcoxon signed-rank test (two-sided, scipy.stats.wilcoxon) of the approach minus "
                         "MTLRS over the subjects both have, with the median paired difference.",
    "per_lesion_dice": METRIC_DEFINITIONS["per_lesion_dice"] + " Lesions: 26-connected components of the stack.",
    "spearman": "Spearman's rank correlation between SSIM and per-lesion Dice across subjects (subjects without "
                "reference lesions left out), with its two-sided p-value (scipy.stats.spearmanr).",
    "spearman_subject_means": "the same over all approaches with each subject counted once: on each subject's mean "
                              "SSIM and mean per-lesion Dice over the approaches that segment it (pooling every "
                              "approach's pair would count a subject once per approach, and the p-value would treat "
                              "those repeats as independent).",
    "seconds_per_slice": "wall-clock seconds to reconstruct (and segment) one slice on the evaluating device.",
}


def subject_metrics(target: np.ndarray, labels: np.ndarray | None, image: np.ndarray,
                    probabilities: np.ndarray | None,
                    class_names: list[str] | tuple[str, ...] = ("background", "lesion"),
                    lesion_classes: list[int] | tuple[int, ...] = (1,)) -> dict[str, float]:
    """The table's numbers for one subject: complex or magnitude images [S, H, W], class-index labels [S, H, W],
    class probabilities [S, K, H, W]; per-class and combined Dice only where there are tissue classes too."""
    row = image_quality(np.abs(target), np.abs(image))
    if probabilities is not None and labels is not None:
        predicted = class_map(probabilities)
        mask, reference = np.isin(predicted, lesion_classes), np.isin(labels, lesion_classes)
        row["dice"] = dice(mask, reference)
        row["per_lesion_dice"] = lesion_detection(mask, reference, (1.0, 1.0, 1.0))["per_lesion_dice"]
        if len(class_names) > 2:
            per_class = [dice(predicted == k, labels == k) for k in range(1, len(class_names))]
            row.update({f"dice_{name}": value for name, value in zip(class_names[1:], per_class, strict=True)})
            row["dice_combined"] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else math.nan
    return row


def compare_fold(fold: Fold, workspace: Workspace, device: torch.device, progress: bool = False) -> dict:
    """Every method on the fold's validation cases with k-space; written to comparison/fold_K.json."""
    plans = fold.plans
    folder = kspace_dir(fold.preprocessed)
    cases = cases_with_kspace(folder, fold.val_cases)
    if not cases:
        raise AutopipeError(f"fold {fold.name} has no validation case with k-space", where=str(folder),
                            fix="the comparison needs held-out cases with k-space; use another fold")
    dirs = {m: slice_model_dir(workspace, fold.spec.name, m, fold.name) for m in planned_models(fold.plans)}
    trained = {m: d for m, d in dirs.items() if (d / "checkpoint_final.pt").is_file()}
    models = load_fold_models(trained, device)
    approaches = available_approaches(plans.multitask.approaches if plans.multitask else [], models)
    cs_file = slice_model_dir(workspace, fold.spec.name, CS, fold.name) / CS_FILE
    cs = read_json(cs_file) if cs_file.is_file() else None
    methods = [m for m in CLASSICAL if m != "cs" or cs is not None] + approaches
    rows: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    timings: dict[str, float] = {}
    slices = 0
    with Progress(len(cases), f"comparison fold {fold.name}", enabled=progress) as bar:
        for case in cases:
            reference = case_reference(folder, case)
            results = process_case(folder, case, methods, models, device, cs_weight=cs and cs["weight"],
                                   cs_iterations=cs["iterations"] if cs else plans.reconstruction.cs_iterations,
                                   timings=timings)
            slices += reference["target"].shape[0]
            for method, result in results.items():
                rows[method][case] = subject_metrics(reference["target"], reference.get("segmentation"),
                                                     result.image, result.probabilities, reference["class_names"],
                                                     reference["lesion_classes"])
            bar.advance()
    out = {"fold": fold.name, "cases": cases, "methods": methods, "per_subject": rows,
           "seconds_per_slice": {m: timings[m] / slices for m in methods},
           "cs_weight": cs and cs["weight"], "missing_models": sorted(set(dirs) - set(trained))}
    write_json(comparison_dir(workspace, fold.spec.name) / f"fold_{fold.name}.json", out)
    return out


def read_comparison(path: Path) -> dict:
    """A fold_K.json written by compare_fold, with its undefined metrics (null) back as NaN."""
    result = read_json(path)
    result["per_subject"] = {method: {case: {k: number(v) for k, v in row.items()} for case, row in rows.items()}
                             for method, rows in result["per_subject"].items()}
    return result


def summarize(fold_results: list[dict]) -> dict:
    """Per method: mean and standard deviation of every metric over all subjects of all folds; Spearman
    between SSIM and per-lesion Dice per approach, and over all approaches on per-subject means (each subject
    once)."""
    from scipy.stats import spearmanr

    methods = list(dict.fromkeys(m for r in fold_results for m in r["methods"]))
    table, by_subject = {}, {}
    for method in methods:
        rows = _rows(fold_results, method)
        subjects = list(rows.values())
        entry = {"subjects": len(subjects)}
        for metric in _metrics(subjects):
            values = [s[metric] for s in subjects if metric in s and np.isfinite(s[metric])]
            if values:
                entry[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        pairs = {case: (s["ssim"], s["per_lesion_dice"]) for case, s in rows.items()
                 if "per_lesion_dice" in s and np.isfinite(s["per_lesion_dice"])}
        if pairs:
            for case, pair in pairs.items():
                by_subject.setdefault(case, []).append(pair)
            entry["spearman"] = _spearman(spearmanr, *zip(*pairs.values(), strict=True))
        seconds = [r["seconds_per_slice"][method] for r in fold_results if method in r["seconds_per_slice"]]
        entry["seconds_per_slice"] = float(np.mean(seconds))
        table[method] = entry
    means = [tuple(np.mean(pairs, axis=0)) for pairs in by_subject.values()]
    if "mtlrs" in methods:
        for method in methods:
            if method != "mtlrs":
                table[method]["wilcoxon_vs_mtlrs"] = paired_tests(_rows(fold_results, method),
                                                                  _rows(fold_results, "mtlrs"))
    return {"folds": [r["fold"] for r in fold_results], "methods": table,
            "spearman_subject_means": _spearman(spearmanr, *zip(*means, strict=True)) if means else None,
            "definitions": DEFINITIONS}


def _metrics(subjects: list[dict[str, float]]) -> list[str]:
    """The metrics the subjects have: reconstruction, then lesion, then per-class and combined Dice."""
    present = list(dict.fromkeys(k for s in subjects for k in s))
    fixed = [m for m in (*RECONSTRUCTION_METRICS, *SEGMENTATION_METRICS) if m in present]
    return fixed + [m for m in present if m not in fixed]


def _rows(fold_results: list[dict], method: str) -> dict[str, dict[str, float]]:
    return {case: row for r in fold_results for case, row in r["per_subject"].get(method, {}).items()}


def paired_tests(rows: dict[str, dict[str, float]], reference: dict[str, dict[str, float]],
                 metrics: tuple[str, ...] = ("ssim", "psnr", "dice", "per_lesion_dice", "dice_combined")) -> dict:
    """Per metric: the paired Wilcoxon signed-rank test of rows minus reference over the subjects both have
    (finite values): {"n", "median_difference", "p"} (p nan when fewer than 2 pairs differ)."""
    from scipy.stats import wilcoxon

    out = {}
    for metric in metrics:
        pairs = [(row[metric], reference[case][metric]) for case, row in rows.items()
                 if case in reference and metric in row and metric in reference[case]
                 and np.isfinite(row[metric]) and np.isfinite(reference[case][metric])]
        if not pairs:
            continue
        differences = np.array([a - b for a, b in pairs])
        p = float(wilcoxon(differences).pvalue) if np.count_nonzero(differences) >= 2 else math.nan
        out[metric] = {"n": len(pairs), "median_difference": float(np.median(differences)), "p": p}
    return out


def _spearman(spearmanr, x, y) -> dict:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": math.nan, "p": math.nan, "n": len(x)}
    rho, p = spearmanr(x, y)
    return {"rho": float(rho), "p": float(p), "n": len(x)}


def format_comparison(summary: dict) -> str:
    """The paper's table as text: one row per method, mean +- sd over subjects; per-class Dice, the paired
    tests against MTLRS and the Spearman correlations below it."""
    def cell(entry: dict, metric: str, digits: int) -> str:
        if metric not in entry:
            return "-"
        return f"{entry[metric]['mean']:.{digits}f} ± {entry[metric]['std']:.{digits}f}"

    methods = summary["methods"]
    combined = any("dice_combined" in e for e in methods.values())
    header = (f"{'method':<20}{'SSIM':>17}{'PSNR (dB)':>17}{'NMSE':>17}{'lesion Dice':>17}{'per-lesion Dice':>17}"
              + (f"{'tissue+lesion Dice':>20}" if combined else "") + f"{'s/slice':>9}")
    lines = [header, "-" * len(header)]
    for method, entry in methods.items():
        lines.append(f"{method:<20}{cell(entry, 'ssim', 3):>17}{cell(entry, 'psnr', 2):>17}"
                     f"{cell(entry, 'nmse', 4):>17}{cell(entry, 'dice', 3):>17}{cell(entry, 'per_lesion_dice', 3):>17}"
                     + (f"{cell(entry, 'dice_combined', 3):>20}" if combined else "")
                     + f"{entry['seconds_per_slice']:>9.3f}")
    subjects = max(e["subjects"] for e in methods.values())
    lines.append(f"{subjects} subject(s), folds {', '.join(summary['folds'])}; SSIM/PSNR/NMSE on magnitudes, data "
                 "range = max of the reference volume (fastMRI); Dice over each subject's stack of slices.")
    for method, entry in methods.items():
        per_class = [(m[len("dice_"):], entry[m]["mean"]) for m in entry
                     if m.startswith("dice_") and m != "dice_combined" and isinstance(entry[m], dict)]
        if per_class:
            lines.append(f"Dice per class, {method}: " + ", ".join(f"{n} {v:.3f}" for n, v in per_class))
    for method, entry in methods.items():
        tests = entry.get("wilcoxon_vs_mtlrs")
        if tests:
            lines.append(f"{method} - mtlrs (median paired difference, Wilcoxon p, n): " + "; ".join(
                f"{metric} {t['median_difference']:+.3f} (p {t['p']:.2g}, n {t['n']})" for metric, t in tests.items()))
    for method, entry in methods.items():
        if "spearman" in entry and not math.isnan(entry["spearman"]["rho"]):
            s = entry["spearman"]
            lines.append(f"Spearman SSIM vs per-lesion Dice, {method}: rho {s['rho']:.2f} (p {s['p']:.2g}, "
                         f"n {s['n']})")
    pooled = summary.get("spearman_subject_means")
    if pooled and not math.isnan(pooled["rho"]):
        lines.append(f"Spearman SSIM vs per-lesion Dice, all approaches, each subject once (its means over the "
                     f"approaches): rho {pooled['rho']:.2f} (p {pooled['p']:.2g}, n {pooled['n']} subjects)")
    return "\n".join(lines)


def compare_crossvalidation(root: Path, workspace: Workspace, folds: list[str] | None = None,
                            device: torch.device | None = None, progress: bool = False) -> dict | None:
    """The comparison over every fold whose models are trained (or those named); None if none is.
    Folds already compared are reused unless a model is newer than their fold_K.json."""
    device = device or torch.device("cpu")
    results, dataset = [], None
    for name in folds or [str(k) for k in range(5)]:
        try:
            fold = load_fold(root, workspace, name)
        except AutopipeError:
            if folds:
                raise
            continue
        dataset = fold.spec.name
        dirs = [slice_model_dir(workspace, dataset, m, name) for m in planned_models(fold.plans)]
        finals = [d / "checkpoint_final.pt" for d in dirs]
        if not dirs or not all(f.is_file() for f in finals):
            if folds:
                raise AutopipeError(f"fold {name} has untrained reconstruction models",
                                    where=str(dirs[0].parent.parent if dirs else root),
                                    fix=f"run `autopipe train {name}` first")
            continue
        cached = comparison_dir(workspace, fold.spec.name) / f"fold_{name}.json"
        if cached.is_file() and all(f.stat().st_mtime <= cached.stat().st_mtime for f in finals):
            results.append(read_comparison(cached))
        else:
            results.append(compare_fold(fold, workspace, device, progress))
    if not results:
        return None
    summary = summarize(results)
    path = write_json(comparison_dir(workspace, dataset) / "summary.json", summary)
    return {**summary, "text": format_comparison(summary), "path": path}
