"""Read and write 3D scans with their geometry: NIfTI through nibabel, other ITK formats through SimpleITK.

Every volume travels as a `Volume`: the voxel array in file order (i, j, k) plus the 4x4 affine
that maps voxel indices to RAS+ millimetres (the NIfTI convention). ITK files store an LPS
origin and direction; they are converted on the way in and out, so any output can be written
back onto the scan's native grid and orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from autopipe.errors import first_line
from autopipe.files import atomic_path

NIFTI_ENDINGS = (".nii.gz", ".nii")
ITK_ENDINGS = (".mha", ".mhd", ".nrrd", ".nhdr")
SUPPORTED_ENDINGS = NIFTI_ENDINGS + ITK_ENDINGS
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class UnreadableImage(Exception):
    """A file that exists but cannot be read as an image (truncated, wrong format, empty)."""


@dataclass(frozen=True)
class Header:
    """What a file says about its grid, read without loading the voxels."""

    shape: tuple[int, ...]
    affine: np.ndarray
    dtype: np.dtype

    @property
    def spacing(self) -> tuple[float, ...]:
        return spacing_of(self.affine)

    @property
    def axcodes(self) -> str:
        return axcodes_of(self.affine)


@dataclass(frozen=True)
class Volume:
    """A 3D array in file voxel order and the affine from voxel indices to RAS+ mm."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return spacing_of(self.affine)

    @property
    def axcodes(self) -> str:
        return axcodes_of(self.affine)

    def with_data(self, data: np.ndarray) -> Volume:
        """The same grid holding other voxels (e.g. a mask of this scan)."""
        if data.shape[:3] != self.data.shape[:3]:
            raise ValueError(f"shape {data.shape} does not fit grid {self.data.shape}")
        return Volume(data, self.affine)


def spacing_of(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel size in mm per array axis: the column norms of the affine's 3x3 part."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def axcodes_of(affine: np.ndarray) -> str:
    """Orientation as nibabel axis codes, e.g. 'RAS' or 'LPS': where each array axis points."""
    return "".join(nib.aff2axcodes(affine))


def to_ras(volume: Volume) -> Volume:
    """The same image with array axes reordered and flipped to the closest RAS orientation (lossless)."""
    orientation = nib.io_orientation(volume.affine)
    if np.array_equal(orientation, [[0, 1], [1, 1], [2, 1]]):
        return volume
    data = nib.apply_orientation(volume.data, orientation)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(orientation, volume.shape[:3])
    return Volume(np.ascontiguousarray(data), affine)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[tuple[int, int], ...] | None:
    """[lo, hi) per axis of the non-zero voxels, widened by `margin` voxels and clipped; None if empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append((max(0, int(hit[0]) - margin), min(mask.shape[axis], int(hit[-1]) + 1 + margin)))
    return tuple(box)


def file_ending(path: Path | str) -> str:
    name = str(path).lower()
    for ending in SUPPORTED_ENDINGS:
        if name.endswith(ending):
            return ending
    return Path(name).suffix


def read_header(path: Path | str) -> Header:
    """Shape, affine and dtype of an image file, without reading its voxels."""
    path = Path(path)
    try:
        if file_ending(path) in NIFTI_ENDINGS:
            img = nib.load(str(path))
            return Header(_drop_trailing_ones(tuple(int(s) for s in img.shape)), np.asarray(img.affine, float),
                          img.get_data_dtype())
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        size = tuple(int(s) for s in reader.GetSize())
        if reader.GetNumberOfComponents() > 1:
            size += (reader.GetNumberOfComponents(),)
        affine = _itk_affine(reader.GetDirection(), reader.GetSpacing(), reader.GetOrigin())
        return Header(size, affine, _itk_dtype(reader.GetPixelID()))
    except Exception as exc:  # nibabel and ITK raise many types for bad files
        raise UnreadableImage(first_line(exc)) from exc


def read_volume(path: Path | str, dtype: np.dtype | type | None = None) -> Volume:
    """Load an image file into a Volume (voxel order i, j, k; RAS+ affine)."""
    path = Path(path)
    try:
        if file_ending(path) in NIFTI_ENDINGS:
            img = nib.load(str(path))
            data = np.asanyarray(img.dataobj)
            affine = np.asarray(img.affine, float)
        else:
            import SimpleITK as sitk

            itk = sitk.ReadImage(str(path))
            data = sitk.GetArrayFromImage(itk)
            ndim = itk.GetDimension()
            # ITK arrays are (k, j, i[, components]); put them in (i, j, k) order like NIfTI.
            data = np.ascontiguousarray(np.transpose(data, tuple(range(ndim))[::-1] + tuple(range(ndim, data.ndim))))
            affine = _itk_affine(itk.GetDirection(), itk.GetSpacing(), itk.GetOrigin())
    except Exception as exc:
        raise UnreadableImage(first_line(exc)) from exc
    data = np.asarray(data).reshape(_drop_trailing_ones(data.shape))
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Volume(data, affine)


def _drop_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A 3D scan stored with a trailing time axis of length 1 (X, Y, Z, 1), as converters often write it, is 3D."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def write_volume(path: Path | str, volume: Volume, dtype: np.dtype | type | None = None) -> Path:
    """Write atomically (temporary file, then rename), so a crash never leaves a file that looks finished."""
    path = Path(path)
    data = volume.data if dtype is None else volume.data.astype(dtype)
    ending = file_ending(path)
    with atomic_path(path, suffix=ending) as tmp:
        if ending in NIFTI_ENDINGS:
            img = nib.Nifti1Image(data, volume.affine)
            img.set_qform(volume.affine, code=1)
            img.set_sform(volume.affine, code=1)
            nib.save(img, str(tmp))
        else:
            _write_itk(str(tmp), data, volume.affine)
    return path


def _write_itk(path: str, data: np.ndarray, affine: np.ndarray) -> None:
    import SimpleITK as sitk

    sitk.WriteImage(_to_itk(data, affine), path, useCompression=True)


def _to_itk(data: np.ndarray, affine: np.ndarray) -> object:
    import SimpleITK as sitk

    itk = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    spacing = np.array(spacing_of(affine))
    direction = _LPS_TO_RAS @ affine[:3, :3] / spacing
    itk.SetSpacing(spacing.tolist())
    itk.SetDirection(direction.flatten().tolist())
    itk.SetOrigin((_LPS_TO_RAS @ affine[:3, 3]).tolist())
    return itk


def grid_coverage(shape: tuple[int, ...], affine: np.ndarray, other_shape: tuple[int, ...],
                  other_affine: np.ndarray, samples: int = 9) -> float:
    """Share of grid (`shape`, `affine`)'s field of view that grid (`other_shape`, `other_affine`) covers, from a
    lattice of samples^3 points (oblique grids included)."""
    axes = [np.linspace(0, n - 1, samples) for n in shape[:3]]
    points = np.stack([*np.meshgrid(*axes, indexing="ij"), np.ones((samples,) * 3)]).reshape(4, -1)
    inside = np.linalg.inv(other_affine) @ affine @ points
    within = [(inside[k] >= -0.5) & (inside[k] <= other_shape[k] - 0.5) for k in range(3)]
    return float(np.mean(within[0] & within[1] & within[2]))


def resample_onto(volume: Volume, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """`volume` resampled linearly, in world coordinates, onto the grid (`shape`, `affine`), float32; 0 outside.

    For channels of one session that the scanner stored on different grids: the same patient position, so no
    registration, only interpolation (preprocessing registers the channels afterwards)."""
    import SimpleITK as sitk

    moving = _to_itk(np.asarray(volume.data, np.float32), volume.affine)
    reference = _to_itk(np.zeros(tuple(shape[:3]), np.float32), affine)
    out = sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return np.ascontiguousarray(sitk.GetArrayFromImage(out).transpose(2, 1, 0))


def _itk_affine(direction: tuple, spacing: tuple, origin: tuple) -> np.ndarray:
    """RAS+ affine from ITK's LPS direction cosines, spacing and origin (3D, or 2D padded to 3D)."""
    dim = len(spacing)
    rot = np.eye(3)
    rot[:dim, :dim] = np.asarray(direction, float).reshape(dim, dim)
    sp = np.ones(3)
    sp[:dim] = spacing
    org = np.zeros(3)
    org[:dim] = origin
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ rot @ np.diag(sp)
    affine[:3, 3] = _LPS_TO_RAS @ org
    return affine


def _itk_dtype(pixel_id: int) -> np.dtype:
    """The numpy dtype of an ITK pixel type, found by asking ITK for a one-voxel array of it."""
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id)).dtype
