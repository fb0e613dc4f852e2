"""Segmentation metrics on binary masks: overlap, volume, surface distance and lesion-wise detection.

Every function takes bool masks of one shape (2D or 3D; other dtypes are read as `!= 0`) and, where
a physical size is involved, the voxel spacing in mm per array axis. Each docstring states the
definition and the convention for empty masks, so reports can cite them; a value that is undefined
for a case (e.g. HD95 with one mask empty) is nan, and `aggregate` counts how many there were.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from autopipe.cohort.image_io import bounding_box
from autopipe.preprocess.labels import components

METRIC_DEFINITIONS: dict[str, str] = {
    "dice": "Dice = 2|P∩R| / (|P| + |R|) over voxels; 1 when both masks are empty",
    "voe": "volumetric overlap error = 1 - |P∩R| / |P∪R|, in [0, 1]; 0 when both masks are empty",
    "hd95_mm": "95% Hausdorff distance (mm) = max of the 95th percentiles of the directed surface-to-surface "
               "distances P->R and R->P; 0 when both empty, undefined when one is empty",
    "avd_ml": "absolute volume difference (ml) = |V_P - V_R|",
    "pred_volume_ml": "predicted volume V_P (ml) = voxels x voxel volume",
    "ref_volume_ml": "reference volume V_R (ml) = voxels x voxel volume",
    "lesion_precision": "predicted lesions (26-connected) overlapping a reference lesion / predicted lesions; "
                        "nan if none predicted, 1 if neither mask has a lesion",
    "lesion_recall": "reference lesions overlapped by a predicted lesion / reference lesions; "
                     "nan if the reference has none, 1 if neither mask has a lesion",
    "lesion_f1": "lesion-wise F1 = 2 precision recall / (precision + recall); 0 if only one mask has lesions",
    "per_lesion_dice": "mean over reference lesions of the Dice between the lesion and the predicted lesions "
                       "overlapping it (0 if none); nan without reference lesions",
    "ref_lesions": "number of reference lesions (26-connected components)",
    "pred_lesions": "number of predicted lesions (26-connected components)",
}


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice = 2|P∩R| / (|P| + |R|); 1.0 when both masks are empty (nothing to find, nothing found)."""
    pred, ref = _binary_pair(pred, ref)
    total = np.count_nonzero(pred) + np.count_nonzero(ref)
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(pred & ref)) / int(total)


def volumetric_overlap_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """VOE = 1 - |P∩R| / |P∪R| (1 - Jaccard), in [0, 1] as the PVL study reports it; 0.0 when both are empty."""
    pred, ref = _binary_pair(pred, ref)
    union = np.count_nonzero(pred | ref)
    return 0.0 if union == 0 else 1.0 - int(np.count_nonzero(pred & ref)) / int(union)


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in ml: voxels x voxel volume (prod of spacing, mm^3) / 1000."""
    mask = np.asarray(mask, dtype=bool)
    return int(np.count_nonzero(mask)) * float(np.prod(_spacing(spacing, mask))) / 1000.0


def absolute_volume_difference(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """AVD = |V_P - V_R| in ml."""
    pred, ref = _binary_pair(pred, ref)
    return abs(volume_ml(pred, spacing) - volume_ml(ref, spacing))


def hausdorff95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """95% Hausdorff distance in mm between the surfaces of P and R.

    Surface voxels: the mask minus its erosion by the connectivity-1 cross (voxels on the array border
    count as surface). Directed distances: from each surface voxel of one mask to the nearest surface
    voxel of the other, in mm (Euclidean, anisotropic spacing honoured). HD95 = max(95th percentile P->R,
    95th percentile R->P), percentiles linearly interpolated. Note medpy's `hd95` instead takes one
    percentile of both directions pooled, which can be smaller. 0.0 when both masks are empty; nan
    (undefined) when exactly one is.
    """
    pred, ref = _binary_pair(pred, ref)
    sampling = _spacing(spacing, pred)
    has_pred, has_ref = pred.any(), ref.any()
    if not (has_pred or has_ref):
        return 0.0
    if not (has_pred and has_ref):
        return float("nan")
    # nearest surfaces lie inside the box; the margin keeps the erosion exact
    box = tuple(slice(lo, hi) for lo, hi in bounding_box(pred | ref, margin=1))
    pred_surface, ref_surface = _surface(pred[box]), _surface(ref[box])
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=sampling)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)[ref_surface]
    return float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Lesions of a mask: (labels 0..n, n), connected by face, edge or corner (26-connectivity in 3D, 8 in 2D)."""
    return components(mask)


def lesion_detection(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                     min_overlap_voxels: int = 1) -> dict[str, float]:
    """Lesion-wise detection: match predicted and reference lesions (26-connected components) by overlap.

    A reference lesion and a predicted lesion match when they share at least `min_overlap_voxels`
    voxels. A reference lesion is detected when some predicted lesion matches it; a predicted lesion
    is a true positive when it matches some reference lesion.
        precision = true-positive predictions / predicted lesions
        recall = detected reference lesions / reference lesions
        f1 = 2 precision recall / (precision + recall)
        per_lesion_dice = mean over reference lesions L of Dice(L, union of predicted lesions matching L),
                          0 for a missed lesion; nan without reference lesions.
    Conventions: no lesion in either -> precision = recall = f1 = 1; no reference lesion but
    predictions -> recall nan, precision 0, f1 0; reference lesions but no prediction -> precision nan,
    recall 0, f1 0. `spacing` is checked but not used: matching counts voxels.
    Returns ref_lesions, pred_lesions, detected, true_positive_predictions, precision, recall, f1, per_lesion_dice.
    """
    pred, ref = _binary_pair(pred, ref)
    _spacing(spacing, pred)
    ref_labels, n_ref = components(ref)
    pred_labels, n_pred = components(pred)
    # Overlap of every (reference lesion, predicted lesion) pair that touches, in one pass over the voxels.
    both = (ref_labels > 0) & (pred_labels > 0)
    pair_keys = ref_labels[both].astype(np.int64) * (n_pred + 1) + pred_labels[both]
    keys, overlaps = np.unique(pair_keys, return_counts=True)
    matched = overlaps >= min_overlap_voxels
    ref_of, pred_of, overlaps = keys[matched] // (n_pred + 1), keys[matched] % (n_pred + 1), overlaps[matched]
    detected, true_positives = int(np.unique(ref_of).size), int(np.unique(pred_of).size)

    ref_sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    # Predicted lesions are disjoint, so the union's size and its overlap with L are sums over the matches.
    intersection = np.bincount(ref_of, weights=overlaps, minlength=n_ref + 1)[1:]
    union_size = np.bincount(ref_of, weights=pred_sizes[pred_of], minlength=n_ref + 1)[1:]
    lesion_dice = 2.0 * intersection / (ref_sizes[1:] + union_size)
    precision, recall, f1 = _detection_scores(n_ref, n_pred, detected, true_positives)
    return {
        "ref_lesions": n_ref,
        "pred_lesions": n_pred,
        "detected": detected,
        "true_positive_predictions": true_positives,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "per_lesion_dice": float(lesion_dice.mean()) if n_ref else float("nan"),
    }


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Every metric of METRIC_DEFINITIONS for one case, keyed as there; lesion counts are ints."""
    pred, ref = _binary_pair(pred, ref)
    _spacing(spacing, pred)
    lesions = lesion_detection(pred, ref, spacing)
    pred_volume, ref_volume = volume_ml(pred, spacing), volume_ml(ref, spacing)
    return {
        "dice": dice(pred, ref),
        "voe": volumetric_overlap_error(pred, ref),
        "hd95_mm": hausdorff95(pred, ref, spacing),
        "avd_ml": abs(pred_volume - ref_volume),
        "pred_volume_ml": pred_volume,
        "ref_volume_ml": ref_volume,
        "lesion_precision": lesions["precision"],
        "lesion_recall": lesions["recall"],
        "lesion_f1": lesions["f1"],
        "per_lesion_dice": lesions["per_lesion_dice"],
        "ref_lesions": lesions["ref_lesions"],
        "pred_lesions": lesions["pred_lesions"],
    }


def aggregate(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric over cases: mean, std (population), median and n of the finite values, and n_undefined (nan).

    Metrics are those of the rows, in first-seen order; a row lacking a metric counts as undefined.
    With no finite value, mean, std and median are nan.
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    summary = {}
    for name in names:
        values = np.array([row.get(name, np.nan) for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        stats = (finite.mean(), finite.std(), np.median(finite)) if finite.size else (np.nan,) * 3
        summary[name] = {
            "mean": float(stats[0]),
            "std": float(stats[1]),
            "median": float(stats[2]),
            "n": int(finite.size),
            "n_undefined": int(values.size - finite.size),
        }
    return summary


def _detection_scores(n_ref: int, n_pred: int, detected: int, true_positives: int) -> tuple[float, float, float]:
    """(precision, recall, f1) with the empty-case conventions of `lesion_detection`."""
    if n_ref == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    if n_ref == 0:
        return 0.0, float("nan"), 0.0
    if n_pred == 0:
        return float("nan"), 0.0, 0.0
    precision, recall = true_positives / n_pred, detected / n_ref
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a face neighbour outside the mask or outside the array."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def _binary_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got shape {pred.shape}")
    return pred, ref


def _spacing(spacing: Sequence[float], mask: np.ndarray) -> tuple[float, ...]:
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for masks of shape {mask.shape}")
    return tuple(float(s) for s in spacing)
