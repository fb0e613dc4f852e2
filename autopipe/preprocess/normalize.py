"""Intensity normalization per channel, robust to a few extreme voxels.

z-score inside the brain: mean and standard deviation over brain voxels after clipping them to their
0.05th-99.95th percentiles, so a handful of hot voxels (or a metal artefact) cannot set the scale;
the clipped range still keeps the brightest lesions (they are far more than 0.05% of a brain only in
extreme lesion loads, and then lose only their top few voxels). Outside the brain the value is 0.
"""

from __future__ import annotations

import numpy as np

CLIP_PERCENTILES = (0.05, 99.95)
NORMALIZATION_SCHEMES = ("zscore_brain", "zscore", "ct")


def zscore(image: np.ndarray, mask: np.ndarray | None = None,
           clip_percentiles: tuple[float, float] = CLIP_PERCENTILES) -> tuple[np.ndarray, dict]:
    """(normalized float32 image, the statistics used) for `image`; with a mask, 0 outside it.

    The statistics dict (mean, std, clip_low, clip_high) is stored with the case so the mapping can be
    undone or checked.
    """
    if mask is not None and mask.shape != image.shape:
        raise ValueError(f"mask {mask.shape} and image {image.shape} must have the same shape")
    inside = image[mask > 0] if mask is not None else image.ravel()
    if inside.size == 0:
        raise ValueError("cannot normalize: the mask is empty")
    low, high = (float(v) for v in np.percentile(inside, clip_percentiles))
    clipped = np.clip(inside, low, high)
    mean, std = float(clipped.mean()), float(clipped.std())
    std = std if std > 1e-8 * max(1.0, abs(mean)) else 1.0  # a constant image: centre it only
    out = (np.clip(image, low, high) - mean) / std
    if mask is not None:
        out = np.where(mask > 0, out, 0.0)
    return out.astype(np.float32), {"mean": mean, "std": std, "clip_low": low, "clip_high": high}


def ct_normalize(image: np.ndarray, mean: float, std: float, low: float, high: float) -> np.ndarray:
    """CT: clip to the cohort's foreground percentiles, then the cohort's mean and std (nnU-Net)."""
    return ((np.clip(image, low, high) - mean) / max(std, 1e-8)).astype(np.float32)
