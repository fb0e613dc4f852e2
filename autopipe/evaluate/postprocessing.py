"""Decide from cross-validation whether removing small predicted lesions helps, and from which volume.

Small spurious blobs cost lesion-wise precision but barely move Dice; removing them can also delete
real small lesions. So a threshold is adopted only when the validation predictions show it: mean
Dice must not drop and mean lesion F1 must rise by at least MIN_F1_GAIN (nnU-Net decides its own
postprocessing the same way, on the cross-validation predictions, never on the test set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autopipe.evaluate.metrics import dice, lesion_detection
from autopipe.predict.postprocess import remove_small_lesions

MIN_F1_GAIN = 0.01  # smaller gains are noise on a handful of validation cases
DEFAULT_CANDIDATES_MM3 = (0, 10, 20, 50, 100)

Case = tuple[np.ndarray, np.ndarray, tuple[float, ...]]  # (prediction, reference, spacing in mm)


def choose_min_lesion_volume(cases: list[Case], candidates_mm3: Sequence[float] = DEFAULT_CANDIDATES_MM3) -> dict:
    """The largest minimum lesion volume (mm^3) that keeps mean Dice and raises mean lesion F1 by >= MIN_F1_GAIN.

    Each candidate is applied with `remove_small_lesions` to every prediction; 0 (no postprocessing)
    is always scored as the baseline and is the answer when no candidate qualifies.
    Returns {"min_lesion_volume_mm3", "reason" (a sentence with the figures), "candidates": [{
    "min_lesion_volume_mm3", "dice", "lesion_f1"}, ...] in increasing volume}.
    """
    if not cases:
        raise ValueError("choose_min_lesion_volume needs at least one (prediction, reference, spacing) case")
    if any(c < 0 for c in candidates_mm3):
        raise ValueError(f"candidate volumes must be >= 0, got {tuple(candidates_mm3)}")
    scores = [_score(cases, volume) for volume in sorted(set(candidates_mm3) | {0})]
    baseline = scores[0]
    qualifying = [s for s in scores[1:] if s["dice"] >= baseline["dice"]
                  and s["lesion_f1"] >= baseline["lesion_f1"] + MIN_F1_GAIN - 1e-12]
    chosen = qualifying[-1] if qualifying else baseline
    return {"min_lesion_volume_mm3": chosen["min_lesion_volume_mm3"],
            "reason": _reason(chosen, baseline, len(cases)),
            "candidates": scores}


def _score(cases: list[Case], min_volume_mm3: float) -> dict:
    """Mean Dice and mean lesion F1 over the cases after removing lesions under `min_volume_mm3`."""
    dices, f1s = [], []
    for pred, ref, spacing in cases:
        kept = remove_small_lesions(pred, spacing, min_volume_mm3)
        dices.append(dice(kept, ref))
        f1s.append(lesion_detection(kept, ref, spacing)["f1"])
    return {"min_lesion_volume_mm3": min_volume_mm3, "dice": float(np.mean(dices)), "lesion_f1": float(np.mean(f1s))}


def _reason(chosen: dict, baseline: dict, n_cases: int) -> str:
    if chosen is baseline:
        return (f"keeping every predicted lesion: no candidate volume raised mean lesion F1 by {MIN_F1_GAIN} or more "
                f"without lowering mean Dice over {n_cases} cases (without postprocessing: Dice "
                f"{baseline['dice']:.4f}, lesion F1 {baseline['lesion_f1']:.4f})")
    return (f"removing predicted lesions under {chosen['min_lesion_volume_mm3']:g} mm^3 raised mean lesion F1 from "
            f"{baseline['lesion_f1']:.4f} to {chosen['lesion_f1']:.4f} while mean Dice went from "
            f"{baseline['dice']:.4f} to {chosen['dice']:.4f} over {n_cases} cases")
