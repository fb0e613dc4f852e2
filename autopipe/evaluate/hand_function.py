"""`autopipe evaluate`, hand function: every fold's held-out predictions pooled, with bootstrap intervals.

    results/DATASET/hand_function/
        summary.json            metrics per model, per fold and pooled, with definitions and intervals
        calibration.png         reliability diagram of the pooled held-out probabilities
        coefficients_mean.nii.gz / .png   the `predicted` lesion-map weights averaged over the folds (and
        coefficients_oracle_mean.*)       the oracle's); fold_K/coefficients[_oracle].nii.gz / .png per fold

Models: the logistic regressions (predicted, oracle, baseline; autopipe.train.hand_fold) and every joint
U-Net trained (results/DATASET/joint_*/fold_K/hand_function.json). Each subject is scored once, by the
fold that held it out. On a synthetic cohort the region that generated the labels is known
(groundtruth/motor_region_template.nii.gz): the share of the map's weight inside it is reported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import read_volume
from autopipe.evaluate.classification import (
    METRIC_DEFINITIONS,
    bootstrap_intervals,
    classification_metrics,
    format_metrics,
    paired_comparison,
    plot_calibration,
)
from autopipe.evaluate.coefficient_map import cells_to_volume, plot_map, region_weight_fraction, write_map
from autopipe.files import read_json, write_json
from autopipe.layout import HELD_OUT_FILE, JOINT_PREFIX, JOINT_RESULT_FILE, PREDICTOR_FILE, hand_dir
from autopipe.models.hand_predictor import VARIANTS, load_classifier
from autopipe.models.lesion_features import CoarseGrid, cell_fraction, nearest_on_grid
from autopipe.paths import Workspace

log = logging.getLogger(__name__)

GENERATING_REGION = "groundtruth/motor_region_template.nii.gz"
JOINT_DESCRIPTION = "joint U-Net: a logistic head on its whole-brain lesion map, L = L_seg + r L_cls"
PVL_REFERENCE = {"accuracy": 0.872, "f1": 0.838, "source": "PVL study, logistic regression on segmentations"}


def collect_predictions(workspace: Workspace, dataset: str) -> dict[str, dict[str, dict[str, dict]]]:
    """model -> fold -> case -> {"label", "probability"}, from every finished fold of every model."""
    models: dict[str, dict[str, dict[str, dict]]] = {}
    for path in sorted(hand_dir(workspace, dataset).glob(f"fold_*/{HELD_OUT_FILE}")):
        if not (path.parent / PREDICTOR_FILE).is_file():
            continue  # a fold interrupted between its two files
        fold = path.parent.name.removeprefix("fold_")
        for case, row in read_json(path)["cases"].items():
            for variant in VARIANTS:
                models.setdefault(variant, {}).setdefault(fold, {})[case] = {"label": row["label"],
                                                                             "probability": row[variant]}
    for path in sorted((workspace.results / dataset).glob(f"{JOINT_PREFIX}*/fold_*/{JOINT_RESULT_FILE}")):
        result = read_json(path)
        fold = path.parent.name.removeprefix("fold_")
        cases = {c: v for c, v in result["cases"].items() if v["label"] is not None}
        models.setdefault(path.parent.parent.name, {})[fold] = cases
    return models


def score(folds: dict[str, dict[str, dict]], resamples: int = 2000, seed: int = 0) -> dict:
    """Metrics with bootstrap intervals per fold and over the pooled subjects of all folds."""
    def metrics(rows: list[dict]) -> dict:
        y = [int(r["label"]) for r in rows]
        p = [float(r["probability"]) for r in rows]
        return {**classification_metrics(y, p), "ci": {k: list(v) for k, v in bootstrap_intervals(
            y, p, resamples=resamples, seed=seed).items()}}

    per_fold = {k: metrics(list(cases.values())) for k, cases in sorted(folds.items(), key=lambda kv: int(kv[0]))}
    pooled = [row for cases in folds.values() for row in cases.values()]
    return {"folds": per_fold, "pooled": metrics(pooled)}


def evaluate_hand_function(root: Path, workspace: Workspace, dataset: str, *, resamples: int = 2000,
                           seed: int = 0) -> dict | None:
    """Score every hand-function model that has finished folds; None when none has. Writes the files above."""
    models = collect_predictions(workspace, dataset)
    if not models:
        return None
    out = hand_dir(workspace, dataset)
    scores = {name: {"folds_scored": sorted(folds, key=int), **score(folds, resamples, seed)}
              for name, folds in models.items()}
    curves = {}
    for name, folds in models.items():
        rows = [row for cases in folds.values() for row in cases.values()]
        curves[name] = ([int(r["label"]) for r in rows], [float(r["probability"]) for r in rows])
    plot_calibration(out / "calibration.png", curves, "hand function: pooled held-out subjects")
    summary = {
        "definitions": METRIC_DEFINITIONS, "bootstrap": {"resamples": resamples, "level": 0.95, "seed": seed},
        "models": {name: {"description": VARIANTS.get(name, JOINT_DESCRIPTION), **s} for name, s in scores.items()},
        "comparisons": compare_models(models, resamples, seed),
        "reference": PVL_REFERENCE,
        "coefficient_map": mean_coefficient_map(root, out),
    }
    write_json(out / "summary.json", summary)
    summary["text"] = format_summary(summary, out)
    return summary


def compare_models(models: dict[str, dict[str, dict[str, dict]]], resamples: int = 2000, seed: int = 0
                   ) -> dict[str, dict]:
    """"A vs B" -> paired_comparison on the subjects both scored: the predicted maps against the oracle (what
    segmentation costs), every model against the volume-only baseline (what location adds) and every joint U-Net
    against the two-stage `predicted` regression (what training both together adds)."""
    pairs = [("predicted", "oracle")] + [(name, "baseline") for name in models if name != "baseline"] \
        + [(name, "predicted") for name in models if name.startswith(JOINT_PREFIX)]
    result = {}
    for a, b in pairs:
        if a not in models or b not in models:
            continue
        rows_a, rows_b = (_pooled(models[name]) for name in (a, b))
        common = sorted(set(rows_a) & set(rows_b))
        if not common:
            continue
        labels = [int(rows_a[c]["label"]) for c in common]
        result[f"{a} vs {b}"] = paired_comparison(labels, [rows_a[c]["probability"] for c in common],
                                                  [rows_b[c]["probability"] for c in common],
                                                  resamples=resamples, seed=seed)
    return result


def _pooled(folds: dict[str, dict[str, dict]]) -> dict[str, dict]:
    return {case: row for cases in folds.values() for case, row in cases.items()}


def mean_coefficient_map(root: Path, out: Path) -> dict | None:
    """Each fold's `predicted` and `oracle` lesion-map weights as maps, their mean over the folds, and the mean
    map's weight inside the generating region."""
    result = {}
    for variant, suffix in (("predicted", ""), ("oracle", "_oracle")):
        volumes, grid = [], None
        for path in sorted(out.glob(f"fold_*/{PREDICTOR_FILE}")):
            model, grid, cells, predictor = load_classifier(path, variant)
            weights = np.array([w for n, w in zip(model.names, model.weights, strict=True) if n.startswith("cell_")])
            if not len(weights) or predictor.get("template") is None:
                continue
            volumes.append(cells_to_volume(weights, cells, grid))
            title = f"hand function fold {predictor['fold']}: {variant} lesion-map weights (C {model.c:g})"
            write_map(path.parent / f"coefficients{suffix}.nii.gz", volumes[-1], grid)
            plot_map(path.parent / f"coefficients{suffix}.png", volumes[-1], grid, predictor["template"], title)
        if not volumes or grid is None:
            return None
        volume = np.mean(volumes, axis=0)
        write_map(out / f"coefficients{suffix}_mean.nii.gz", volume, grid)
        region = generating_region(root, grid)
        plot_map(out / f"coefficients{suffix}_mean.png", volume, grid, predictor["template"],
                 f"hand function: {variant} lesion-map weights, mean of {len(volumes)} fold(s)", region)
        result[variant] = {"folds": len(volumes), "map": str(out / f"coefficients{suffix}_mean.nii.gz")}
        if region is not None:
            brain = np.zeros(grid.shape, bool)
            brain.ravel()[cells] = True
            result[variant]["weight_in_generating_region"] = region_weight_fraction(volume, region, brain)
    return result


def generating_region(root: Path, grid: CoarseGrid) -> np.ndarray | None:
    """Share of each coarse cell inside the synthetic cohort's generating region, or None for a real cohort."""
    path = root / GENERATING_REGION
    if not path.is_file():
        return None
    region = read_volume(path)
    fine = nearest_on_grid((region.data > 0).astype(np.uint8), region.affine, grid.fine_shape, grid.fine_affine)
    return cell_fraction(fine, grid)


def format_summary(summary: dict, out: Path) -> str:
    """The pooled table, each fold's accuracy / F1 / AUC, and the map's weight in the generating region."""
    models = summary["models"]
    rows = {name: s["pooled"] for name, s in models.items()}
    intervals = {name: {k: tuple(v) for k, v in s["pooled"]["ci"].items()} for name, s in models.items()}
    lines = ["hand function (impaired vs good), held-out subjects of every trained fold pooled, 95% bootstrap "
             "intervals:", format_metrics(rows, intervals)]
    for name, s in models.items():
        folds = ", ".join(f"{k}: acc {m['accuracy']:.2f} F1 {_num(m['f1'])} AUC {_num(m['roc_auc'])} (n {m['n']})"
                          for k, m in s["folds"].items())
        lines.append(f"  {name}: {folds}")
    if summary.get("comparisons"):
        lines.append("paired on the same subjects (a - b, 95% paired bootstrap; McNemar exact p):")
    for pair, c in summary.get("comparisons", {}).items():
        lines.append(f"  {pair}: accuracy {c['accuracy_difference']:+.3f} [{c['accuracy_difference_ci'][0]:+.3f}, "
                     f"{c['accuracy_difference_ci'][1]:+.3f}] (ratio {_num(c['accuracy_ratio'])}, p "
                     f"{c['mcnemar_p']:.2g}, {c['only_a_right']} vs {c['only_b_right']} subjects right by one only), "
                     f"log loss {c['log_loss_difference']:+.3f} [{c['log_loss_difference_ci'][0]:+.3f}, "
                     f"{c['log_loss_difference_ci'][1]:+.3f}] (n {c['n']})")
    reference = summary["reference"]
    lines.append(f"  reference ({reference['source']}): accuracy {reference['accuracy']}, F1 {reference['f1']}")
    for variant, info in (summary.get("coefficient_map") or {}).items():
        share = info.get("weight_in_generating_region")
        if share:
            lines.append(f"  {variant} map: {share['positive']:.0%} of the positive weight lies in the generating "
                         f"region (a map spread evenly over the brain: {share['chance']:.0%})")
    lines.append(f"summary, calibration plot and coefficient maps: {out}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:.2f}"
