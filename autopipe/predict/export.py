"""Write a prediction so that it lies exactly on the scan it came from: the input file's own header and affine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from autopipe.cohort.image_io import NIFTI_ENDINGS, Volume, file_ending, read_header, write_volume
from autopipe.files import atomic_path
from autopipe.models.lesion_features import on_full_grid
from autopipe.predict.postprocess import remove_small_lesions
from autopipe.preprocess.labels import threshold_interpolated
from autopipe.preprocess.properties import CaseProperties


def write_like(path: Path, data: np.ndarray, reference: Path, dtype: type) -> Path:
    """`data` (in `reference`'s voxel order) written atomically with `reference`'s header: for NIfTI the same
    affine, qform/sform codes and orientation, bit for bit; for other formats its origin, spacing, direction."""
    if file_ending(reference) in NIFTI_ENDINGS and file_ending(path) in NIFTI_ENDINGS:
        ref = nib.load(str(reference))
        if tuple(ref.shape[:3]) != data.shape:
            raise ValueError(f"prediction shape {data.shape} differs from {reference.name} {ref.shape[:3]}")
        header = ref.header.copy()
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
        image = nib.Nifti1Image(data.astype(dtype), ref.affine, header=header)
        image.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]))
        image.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]))
        with atomic_path(path, suffix=file_ending(path)) as tmp:
            nib.save(image, str(tmp))
        return path
    return write_volume(path, Volume(data.astype(dtype), read_header(reference).affine))


def export_template_mask(probability: np.ndarray, properties: CaseProperties, path: Path) -> Path:
    """A lesion probability on a template-space training grid -> a 0/1 mask on the whole template grid
    (`full_grid`, zeros outside the crop box), as NIfTI with the template grid's affine."""
    if properties.space != "template":
        raise ValueError(f"case {properties.case} is in {properties.space} space, not template space")
    mask = on_full_grid((probability >= 0.5).astype(np.uint8), properties)
    return write_volume(path, Volume(mask, properties.full_grid.as_grid().affine), np.uint8)


def export_prediction(probability: np.ndarray, properties: CaseProperties, preprocessed: Path, reference: Path,
                      path: Path, min_lesion_mm3: float = 0.0, probability_path: Path | None = None,
                      probability_npz: Path | None = None) -> list[Path]:
    """A lesion probability on a case's training grid -> a 0/1 mask on its scan, written like `reference`.

    The probability goes back through the preprocessing transforms with linear interpolation and is
    thresholded at 0.5 there (in native space, as nnU-Net resamples probabilities, not masks); lesions
    under `min_lesion_mm3` are then removed. `probability_path` also writes the native probability like
    `reference`; `probability_npz` keeps it compactly (float16, for ensembles of cross-validation predictions).
    """
    native = properties.to_native(probability, preprocessed, order=1)
    if probability_npz is not None:
        write_probability(probability_npz, native.data)
    mask = threshold_interpolated(native.data).astype(bool)
    if min_lesion_mm3 > 0:
        mask = remove_small_lesions(mask, native.spacing, min_lesion_mm3)
    written = [write_like(path, mask.astype(np.uint8), reference, np.uint8)]
    if probability_path is not None:
        written.append(write_like(probability_path, np.clip(native.data, 0, 1), reference, np.float32))
    return written


def write_probability(path: Path, probability: np.ndarray) -> Path:
    """A lesion probability on a scan's grid, as float16 in a compressed .npz (key "probability"), atomically."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probability=np.clip(probability, 0, 1).astype(np.float16))
    return path


def read_probability(path: Path) -> np.ndarray:
    """What write_probability wrote, as float32."""
    with np.load(path) as data:
        return data["probability"].astype(np.float32)
