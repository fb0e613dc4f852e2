"""Back to the scan: arrays on a case's training grid resampled onto its native grid, through the saved transforms.

Predictions are made on the training grid (template or native axes at the target spacing, cropped);
a clinician needs them on the scan they came from. The properties of each case (CASE.json) hold the
native grid as stored in the file, the training grid and the transform files, so this is one
resampling through the inverse transforms, and the result carries the input file's exact affine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import Volume
from autopipe.preprocess.geometry import Grid
from autopipe.preprocess.labels import threshold_interpolated
from autopipe.preprocess.registration import Registration, apply


def to_native(array: np.ndarray, properties: dict, folder: Path, order: int = 3) -> Volume:
    """`array` (on properties["grid"]) on the native grid of channel 0, in the file's own voxel order.

    order 3 for images and probabilities, 1 for masks (then use `mask_to_native`), 0 for label maps.
    `folder` is the preprocessed folder that holds transforms/. Outside the crop the value is 0.
    """
    grid = Grid.from_plain(properties["grid"])
    if tuple(array.shape) != grid.shape:
        raise ValueError(f"array shape {array.shape} does not match the case's grid {grid.shape}")
    native = Grid.from_plain(properties["native"])
    transforms: tuple[str, ...] = ()
    invert = None
    if properties["space"] == "template":
        registration = Registration.from_plain(properties["transforms"]["to_template"])
        transforms, invert = registration.inverse, registration.invert_inverse
    data = apply(Volume(np.asarray(array, np.float32), grid.affine), native, transforms, order,
                 folder / properties["transforms"]["folder"], invert)
    return Volume(data, native.affine)


def mask_to_native(mask: np.ndarray, properties: dict, folder: Path) -> Volume:
    """A 0/1 mask on the training grid as a uint8 0/1 mask on the native grid (linear, threshold 0.5)."""
    volume = to_native(np.asarray(mask, np.float32), properties, folder, order=1)
    return volume.with_data(threshold_interpolated(volume.data))
