"""From prediction and reference files to numbers: per-case metrics, their summary, a table, a cross-validation view.

Predictions are binary lesion masks on the reference's grid (autopipe predict writes them so); a
reference label map is reduced to lesion / not lesion by the dataset's lesion labels. Spacing comes
from the reference header, so distances and volumes are in mm and ml.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np

from autopipe.cohort.image_io import NIFTI_ENDINGS
from autopipe.errors import AutopipeError, first_line
from autopipe.evaluate.metrics import METRIC_DEFINITIONS, aggregate, case_metrics
from autopipe.executor import Workers, parallel_map

AFFINE_TOLERANCE = 1e-3  # mm; rounding in a header round trip stays far below, a wrong grid far above
GRID_FIX = "predictions must be on the reference's grid (autopipe predict writes them so)"

# (metric key, column title, format) for format_table
_COLUMNS = (
    ("dice", "Dice", ".3f"), ("voe", "VOE", ".3f"), ("hd95_mm", "HD95 mm", ".2f"), ("avd_ml", "AVD ml", ".3f"),
    ("lesion_precision", "les P", ".3f"), ("lesion_recall", "les R", ".3f"), ("lesion_f1", "les F1", ".3f"),
    ("per_lesion_dice", "les Dice", ".3f"), ("ref_lesions", "ref les", ".4g"), ("pred_lesions", "pred les", ".4g"),
)


def evaluate_cases(pairs: list[tuple[str, Path, Path]], lesion_labels: tuple[int, ...],
                   progress: bool = False, workers: Workers = 1) -> dict:
    """Metrics of each (case_id, prediction NIfTI, reference NIfTI) pair, their aggregate and the definitions.

    The prediction's lesion mask is its voxels > 0; the reference's is its voxels with a value in
    `lesion_labels`. Cases are measured in parallel over `workers` (processes or a Dask cluster).
    Returns {"cases": {case_id: case_metrics}, "mean": aggregate(...), "definitions": ...}.
    """
    if not lesion_labels:
        raise AutopipeError("no lesion labels given", where="evaluate",
                            fix="pass the label values that mark lesions in the references (e.g. (1,))")
    jobs = [(case_id, pred, ref, tuple(lesion_labels)) for case_id, pred, ref in pairs]
    metrics = parallel_map(evaluate_pair, jobs, workers, "evaluate", enabled=progress)
    cases = {case_id: m for (case_id, _, _), m in zip(pairs, metrics, strict=True)}
    return {"cases": cases, "mean": aggregate(list(cases.values())), "definitions": dict(METRIC_DEFINITIONS)}


def evaluate_pair(job: tuple[str, Path, Path, tuple[int, ...]]) -> dict:
    """The metrics of one (case_id, prediction, reference, lesion labels); refuses files on different grids."""
    case_id, pred_path, ref_path, lesion_labels = job
    pred, _, pred_affine = read_image(case_id, pred_path)
    ref, ref_zooms, ref_affine = read_image(case_id, ref_path)
    if pred.shape != ref.shape or not np.allclose(pred_affine, ref_affine, atol=AFFINE_TOLERANCE, rtol=0):
        raise AutopipeError(f"prediction {pred_path} (shape {pred.shape}) and reference {ref_path} "
                            f"(shape {ref.shape}) are not on the same grid (shapes or affines differ)",
                            where=f"case {case_id}", fix=GRID_FIX)
    return case_metrics(pred > 0, np.isin(ref, lesion_labels), ref_zooms[:ref.ndim])


def format_table(result: dict) -> str:
    """A fixed-width table of an evaluate_cases result: one row per case, then mean and std; nan shows as '-'."""
    width = max([len("case"), len("mean")] + [len(case_id) for case_id in result["cases"]])
    header = "  ".join([f"{'case':<{width}}"] + [f"{title:>8}" for _, title, _ in _COLUMNS])
    lines = [header, "-" * len(header)]
    for case_id, metrics in result["cases"].items():
        lines.append(_row(case_id, width, {key: metrics.get(key, math.nan) for key, _, _ in _COLUMNS}))
    lines.append("-" * len(header))
    for stat in ("mean", "std"):
        values = {key: result["mean"].get(key, {}).get(stat, math.nan) for key, _, _ in _COLUMNS}
        lines.append(_row(stat, width, values))
    return "\n".join(lines)


def crossval_summary(fold_results: dict[int, dict]) -> dict:
    """Pool the folds' evaluate_cases results: per-case statistics over all folds, and the spread of fold means.

    Returns {"folds": sorted fold numbers, "pooled": aggregate over every case of every fold,
    "across_folds": aggregate over the folds' mean values (mean and std across folds)}.
    """
    if not fold_results:
        raise ValueError("crossval_summary needs at least one fold's result")
    folds = sorted(fold_results)
    rows = [metrics for fold in folds for metrics in fold_results[fold]["cases"].values()]
    fold_means = [{key: stats["mean"] for key, stats in fold_results[fold]["mean"].items()} for fold in folds]
    return {"folds": folds, "pooled": aggregate(rows), "across_folds": aggregate(fold_means)}


def pairs_from_folders(pred_dir: Path, ref_dir: Path) -> list[tuple[str, Path, Path]]:
    """(case_id, prediction, reference) for each CASE.nii.gz (or .nii) prediction, matched to the reference by name.

    Every prediction needs a reference; references without a prediction are left out (e.g. another fold's).
    """
    predictions, references = _niftis_by_case(Path(pred_dir)), _niftis_by_case(Path(ref_dir))
    unmatched = sorted(set(predictions) - set(references))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise AutopipeError(f"{len(unmatched)} prediction(s) have no reference: {shown}", where=str(ref_dir),
                            fix=f"put the reference CASE.nii.gz files in {ref_dir}, or remove stray predictions")
    if not predictions:
        raise AutopipeError(f"no CASE.nii.gz predictions found in {pred_dir}", where=str(pred_dir),
                            fix="run autopipe predict first, or point to the folder holding its output")
    return [(case_id, predictions[case_id], references[case_id]) for case_id in sorted(predictions)]


def read_image(case_id: str, path: Path) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """(voxels, header zooms, affine) of a NIfTI file, or an AutopipeError naming the case and file."""
    try:
        image = nib.load(str(path))
        return np.asanyarray(image.dataobj), tuple(float(z) for z in image.header.get_zooms()), image.affine
    except Exception as exc:  # nibabel raises many types for missing, truncated or foreign files
        raise AutopipeError(f"cannot read {path}: {first_line(exc)}", where=f"case {case_id}",
                            fix="check the file is a complete NIfTI image") from exc


def _niftis_by_case(folder: Path) -> dict[str, Path]:
    """CASE -> path for the NIfTI files of a folder; a case present as both .nii and .nii.gz is an error."""
    if not folder.is_dir():
        raise AutopipeError(f"{folder} is not a folder", where=str(folder),
                            fix="give an existing folder of NIfTI files")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        ending = next((e for e in NIFTI_ENDINGS if path.name.endswith(e)), None)
        if ending is None or not path.is_file():
            continue
        case_id = path.name[: -len(ending)]
        if case_id in found:
            raise AutopipeError(f"case {case_id} appears twice: {found[case_id].name} and {path.name}",
                                where=str(folder), fix="keep one file per case")
        found[case_id] = path
    return found


def _row(name: str, width: int, values: dict[str, float]) -> str:
    cells = [f"{name:<{width}}"]
    for key, _, spec in _COLUMNS:
        value = values[key]
        cells.append(f"{'-':>8}" if value is None or not math.isfinite(value) else f"{value:>8{spec}}")
    return "  ".join(cells)
