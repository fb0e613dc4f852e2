"""Lesion masks: a cohort's label map reduced to lesion (1) / not lesion (0), and resampled without new islands."""

from __future__ import annotations

import numpy as np


def binarize(labels: np.ndarray, lesion_labels: tuple[int, ...]) -> np.ndarray:
    """uint8 mask: 1 where the label value is one of `lesion_labels`, 0 elsewhere.

    Label files are stored as floats by some tools; values are rounded before comparison so 0.9999
    still counts as 1.
    """
    values = np.rint(np.asarray(labels)).astype(np.int64)
    return np.isin(values, np.asarray(lesion_labels, np.int64)).astype(np.uint8)


def threshold_interpolated(fraction: np.ndarray) -> np.ndarray:
    """A linearly interpolated binary mask back to uint8 {0, 1} at 0.5.

    Linear interpolation of a 0/1 mask stays within [0, 1] and exceeds 0.5 only next to voxels that
    were 1, so no lesion appears where there was none (unlike cubic interpolation, which overshoots).
    """
    return (np.asarray(fraction) >= 0.5).astype(np.uint8)
