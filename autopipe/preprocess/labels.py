"""Lesion masks: a label map reduced to lesion / not lesion, resampled without new islands, and split into lesions."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask with full connectivity (26 in 3D, 8 in 2D).

    Returns (labels, n): an int array of the mask's shape, 0 outside the mask and 1..n inside.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)
