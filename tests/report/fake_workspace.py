"""A small workspace holding every file `autopipe report` reads, written directly (no training), for its tests."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from autopipe.paths import Workspace
from tests.tiny_cohort import make_tiny_cohort

DATASET = "Dataset001_Fake"
ODD_CASE = 'case<b>&"odd"</b>'
FLAGGED_CASE = "case_001"
IMPLAUSIBLE_CASE = "case_002"
FAILED_CASE = "case_004"
PLAN_REASON = "median spacing of 5 cases & <nothing> coarser"


def png_bytes(width: int = 64, height: int = 40, seed: int = 0) -> bytes:
    """A valid RGB PNG with a colour gradient (not blank), without matplotlib."""
    rows = b"".join(b"\x00" + bytes((x * 4 + seed) % 256 if c == 0 else (y * 6) % 256 if c == 1 else 128
                                    for x in range(width) for c in range(3)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_workspace(base: Path, complete: bool = True) -> tuple[Path, Workspace]:
    """(cohort folder, workspace) under `base`: a valid tiny cohort, and with `complete` every result file."""
    ws = Workspace.under(base)
    root = make_tiny_cohort(ws.raw / DATASET, n_cases=5, kspace=False)
    if complete:
        _plans(ws.plans_dir(DATASET))
        _preprocessed(ws.preprocessed / DATASET / "template_2mm")
        _results(ws.results / DATASET)
    return root, ws


def _write(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed=seed))


def _leaf(value: object, reason: str) -> dict:
    return {"value": value, "reason": reason}


def _plans(folder: Path) -> None:
    _write(folder / "fingerprint.json", {
        "dataset": DATASET, "num_cases": 5, "channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
        "lesion_labels": [1],
        "geometry": {"spacing_ras": [[2.0, 2.0, 2.0]] * 4 + [[1.0, 1.0, 3.0]],
                     "median_spacing_ras": [2.0, 2.0, 2.0], "median_shape_after_crop_ras": [20.0, 24.0, 16.0],
                     "orientations": {"RAS": 5}},
        "lesions": {"total_count": 4, "median_count_per_case": 1.0, "cases_without_lesions": 1, "smallest_mm3": 8.0,
                    "median_volume_mm3": 120.0, "median_total_load_mm3": 120.0, "max_total_load_mm3": 200.0},
        "anatomy": {"cases": 5, "whole_brain_cases": 5, "partial_cases": [], "needs_strip_cases": []},
        "kspace": None,
        "clinical": {"impaired": 2, "good": 3, "missing": [], "positive": "impaired", "negative": "good"},
    })
    _write(folder / "plans.json", {
        "dataset": DATASET, "format_version": 1,
        "hardware": {"device": _leaf("cpu", "detected with torch"), "memory_gb": _leaf(8.0, "half of the RAM")},
        "transpose_forward": _leaf([0, 1, 2], "coarsest axis first"),
        "configurations": {
            "3d_fullres": {"spacing": _leaf([2.0, 2.0, 2.0], PLAN_REASON),
                           "patch_size": _leaf([48, 48, 48], "CPU time rule: shrunk to fit the budget"),
                           "kernel_sizes": _leaf([[3, 3, 3], [3, 3, 3]], "3 along every axis (nnU-Net)")},
            "2d": {"patch_size": _leaf([96, 96], "the largest slice that fits")}},
        "preprocessing": {"registration_seed": _leaf(12345, "fixed: the same registration every run"),
                          "space": _leaf("template", "whole brains: registered to MNI152")},
    })


def _preprocessed(folder: Path) -> None:
    def case(name: str, checks: dict | None = None, flags: list | None = None, accepted: bool = False) -> dict:
        return {"case": name, "seconds": 12.5, "timings": {"strip": 5.0}, "brain_volume_ml": 1200.0,
                "lesion_volume_ml": 1.25, "registration_dice": 0.93, "stripped_with": "deepbet",
                "failed_checks": checks or {}, "accepted": accepted, "flags": flags or []}

    _write(folder / "report.json", {
        "cases": [case("case_000"), case(FLAGGED_CASE, flags=["brain volume 30% below the cohort median"]),
                  case(IMPLAUSIBLE_CASE, checks={"registration": "registration Dice 0.41: the scan may be cropped"}),
                  case(ODD_CASE)],
        "failed": {FAILED_CASE: "cannot read an image of this case: truncated file"},
        "summary": {"finished": 4, "failed": 1, "flagged": 1, "failed_checks": 1, "accepted": 0}})
    _write(folder / "preprocessing_plan.json", {"digest": "0123456789abcdef", "plan": {}})
    _png(folder / "qc" / "montage.png", 1)
    _png(folder / "qc" / f"{FLAGGED_CASE}.png", 2)
    _png(folder / "qc" / f"{IMPLAUSIBLE_CASE}.png", 3)


def _results(folder: Path) -> None:
    stat = {"mean": 0.71, "std": 0.05, "median": 0.7}
    for k, config in enumerate(("3d_fullres", "2d")):
        fold = folder / config / "fold_0"
        _write(fold / "progress.json", [{"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_loss": 1.1 - 0.1 * e,
                                         "pseudo_dice": 0.5, "ema_pseudo_dice": 0.4 + 0.05 * e} for e in range(3)])
        _png(fold / "progress.png", 10 + k)
        (fold / "training.log").write_text(f"training {config} fold 0 on cpu (1 process): 4 train / 1 validation "
                                           "cases\nepoch 1 ...\n", encoding="utf-8")
        (fold / "checkpoint_final.pt").write_bytes(b"")
        _write(folder / config / "crossval" / "summary.json", {
            "configuration": config, "folds": [0],
            "pooled": {m: stat for m in ("dice", "voe", "lesion_f1", "per_lesion_dice", "hd95_mm", "avd_ml")},
            "across_folds": {"dice": stat}})
        _write(folder / config / "crossval" / "postprocessing.json", {
            "min_lesion_volume_mm3": 10, "reason": "removing predicted lesions under 10 mm^3 raised lesion F1",
            "candidates": [{"min_lesion_volume_mm3": v, "dice": 0.7, "lesion_f1": 0.6 + 0.01 * v} for v in (0, 10)]})
    _write(folder / "best_configuration.json", {
        "chosen": "3d_fullres", "members": ["3d_fullres"], "runner_up": "2d",
        "reason": "3d_fullres: mean Dice 0.7512 against 0.7011 for 2d on 5 held-out case(s)",
        "candidates": {"3d_fullres": {"dice": 0.7512, "lesion_f1": 0.66, "cases": 5},
                       "2d": {"dice": 0.7011, "lesion_f1": 0.61, "cases": 5}},
        "paired": {"runner_up": "2d", "mean_difference": 0.05, "wins": 4, "losses": 1,
                   "test": "Wilcoxon signed-rank, two-sided", "statistic": 2.0, "p": 0.19, "n": 5},
        "postprocessing": {"min_lesion_volume_mm3": 10, "reason": "removing predicted lesions under 10 mm^3 helped",
                           "candidates": []},
        "definitions": {"dice": "mean over the pooled held-out cases of 2|P∩R| / (|P| + |R|)"}})
    comparison = folder / "reconstruction" / "comparison"
    _write(comparison / "summary.json", {
        "folds": ["0"], "spearman_subject_means": {"rho": 0.5, "p": 0.3, "n": 5},
        "methods": {"zero_filled": {"subjects": 5, "ssim": stat, "psnr": {"mean": 25.0, "std": 1.0},
                                    "seconds_per_slice": 0.01},
                    "mtlrs": {"subjects": 5, "ssim": stat, "dice": stat, "seconds_per_slice": 0.2}},
        "definitions": {"ssim": "structural similarity on magnitudes"}})
    _png(comparison / "examples.png", 20)
    hand = folder / "hand_function"
    pooled = {"n": 5, "positives": 2, "accuracy": 0.8, "f1": 0.67, "balanced_accuracy": 0.75, "roc_auc": 0.83,
              "log_loss": 0.5, "ci": {"accuracy": [0.4, 1.0], "f1": [0.0, 1.0]}}
    _write(hand / "summary.json", {
        "definitions": {"accuracy": "(TP + TN) / N at threshold 0.5"},
        "bootstrap": {"resamples": 2000, "level": 0.95, "seed": 0},
        "models": {"predicted": {"description": "logistic regression on the predicted lesion map",
                                 "folds_scored": ["0"], "folds": {"0": pooled}, "pooled": pooled}},
        "comparisons": {}, "reference": {"accuracy": 0.872, "f1": 0.838, "source": "PVL study"},
        "coefficient_map": {"predicted": {"folds": 1, "weight_in_generating_region":
                                          {"positive": 0.6, "chance": 0.1}}}})
    _png(hand / "calibration.png", 30)
    _png(hand / "coefficients_mean.png", 31)
