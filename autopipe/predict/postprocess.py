"""Drop predicted lesions too small to be real, a step cross-validation decides on (autopipe.evaluate.postprocessing).

Lesions are connected components that touch by a face, an edge or a corner (26-connectivity in 3D,
8 in 2D), labelled by autopipe.preprocess.labels.components, the one definition every stage counts with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autopipe.preprocess.labels import components


def remove_small_lesions(mask: np.ndarray, spacing: Sequence[float], min_volume_mm3: float) -> np.ndarray:
    """The mask without its components smaller than `min_volume_mm3` (voxels x voxel volume); 0 keeps all.

    A component of exactly `min_volume_mm3` is kept. Returns a new bool array of the mask's shape.
    """
    mask = np.asarray(mask, dtype=bool)
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {mask.ndim}D mask {mask.shape}")
    if min_volume_mm3 < 0:
        raise ValueError(f"min_volume_mm3 must be >= 0, got {min_volume_mm3}")
    if min_volume_mm3 == 0:
        return mask.copy()
    labels, n = components(mask)
    volumes = np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing))
    keep = volumes >= min_volume_mm3 * (1 - 1e-9)  # tolerance: 10 voxels of 0.1 mm^3 are 1 mm^3, not 0.9999...
    keep[0] = False
    return keep[labels]
