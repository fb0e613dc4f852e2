"""The template space lesion maps are compared in: MNI152 (ICBM 2009a symmetric) as shipped inside nilearn.

nilearn's wheel carries the skull-stripped T1 template and its brain mask at 1 and 2 mm, so nothing is
downloaded. The 2 mm copy is what registration is computed against (~2 s instead of ~35 s at 1 mm).
Shared by planning (the brain's extent in template space sizes the patch) and preprocessing.
"""

from __future__ import annotations

import functools

import numpy as np

from autopipe.cohort.image_io import Volume, bounding_box

TEMPLATE_RESOLUTIONS_MM = (1, 2)


@functools.lru_cache(maxsize=4)
def load_template(name: str, resolution_mm: int = 2) -> tuple[Volume, Volume]:
    """(T1 brain image, brain mask) of template `name` at 1 or 2 mm, as RAS Volumes (float32, uint8)."""
    if name != "mni152_2009a_sym":
        raise ValueError(f"unknown template {name!r}; known: 'mni152_2009a_sym'")
    if resolution_mm not in TEMPLATE_RESOLUTIONS_MM:
        raise ValueError(f"template resolution must be one of {TEMPLATE_RESOLUTIONS_MM} mm, got {resolution_mm}")
    import warnings

    from nilearn import datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = datasets.load_mni152_template(resolution=resolution_mm)
        mask = datasets.load_mni152_brain_mask(resolution=resolution_mm)
    brain = Volume(np.asarray(image.get_fdata(), np.float32), np.asarray(image.affine, float))
    brain_mask = Volume((np.asarray(mask.get_fdata()) > 0.5).astype(np.uint8), np.asarray(mask.affine, float))
    return brain, brain_mask


def nearest_resolution(spacing_mm: float) -> int:
    """The shipped template resolution closest to a registration spacing."""
    return min(TEMPLATE_RESOLUTIONS_MM, key=lambda r: abs(r - spacing_mm))


def brain_extent_mm(name: str) -> np.ndarray:
    """Size in mm (RAS axes) of the bounding box of the template's 1 mm brain mask."""
    _, mask = load_template(name, 1)
    return np.array([hi - lo for lo, hi in bounding_box(mask.data)], float) * np.array(mask.spacing)
