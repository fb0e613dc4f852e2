"""The per-case k-space file: HDF5 in a fastMRI-like layout, tied to the case's image volume.

    kspace                complex64 [slices, coils, H, W]  multicoil k-space, centred (DC at H//2, W//2)
    mask                  uint8 [H, W] (2D sampling) or [W] (1D lines)  the acquisition's sampling pattern
    reconstruction_sense  complex64 [slices, H, W]  optional fully sampled SENSE reference image
    sensitivity_map       complex64 [slices, coils, H, W]  optional coil maps
    segmentation          uint8 [slices, H, W]  optional labels aligned with the slices

Attributes: `fully_sampled` (True: 'kspace' holds every sample and 'mask' is applied
retrospectively; False: unsampled entries are zero), `acceleration` (requested),
`effective_acceleration` (samples in the matrix / samples in the mask), `calibration_size`,
`mask_type`, and the relation to the image: `slice_axis` (0, 1 or 2: the axis of the channel-0
image volume the slices run along) and `slice_indices` (the voxel index along that axis of each
slice). Slice s in-plane is `image.take(slice_indices[s], axis=slice_axis)`, H and W being the two
remaining axes in order; a pixel of the SENSE image is the voxel at the same index. Optional `affine`
(4x4, the image volume's voxel -> RAS mm, as in its NIfTI header) places the slices in the scanner's
space, so a reconstruction can be written as NIfTI without the image beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.files import atomic_path

REQUIRED_ATTRS = ("slice_axis", "slice_indices")
OPTIONAL_DATASETS = ("mask", "reconstruction_sense", "sensitivity_map", "segmentation")


@dataclass(frozen=True)
class KspaceHeader:
    """What a k-space file holds, read without loading the arrays."""

    shape: tuple[int, ...]
    dtype: np.dtype
    datasets: dict[str, tuple[tuple[int, ...], np.dtype]]
    attrs: dict

    @property
    def num_slices(self) -> int:
        return self.shape[0]

    @property
    def num_coils(self) -> int:
        return self.shape[1]

    @property
    def matrix(self) -> tuple[int, int]:
        return self.shape[2], self.shape[3]


def read_kspace_header(path: Path | str) -> KspaceHeader:
    """Shapes, dtypes and attributes of a k-space file. Raises OSError/KeyError for unreadable files."""
    import h5py

    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise KeyError("no 'kspace' dataset")
        datasets = {name: (tuple(f[name].shape), f[name].dtype) for name in f if isinstance(f[name], h5py.Dataset)}
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        return KspaceHeader(tuple(f["kspace"].shape), f["kspace"].dtype, datasets, attrs)


def read_kspace(path: Path | str, names: tuple[str, ...] = ("kspace", "mask"), slices: slice | None = None) -> dict:
    """Load datasets (all slices, or a slice range) plus the attributes under key 'attrs'."""
    import h5py

    out: dict = {}
    with h5py.File(path, "r") as f:
        for name in names:
            if name in f:
                ds = f[name]
                out[name] = ds[()] if (slices is None or name == "mask") else ds[slices]
        out["attrs"] = {k: _plain(v) for k, v in f.attrs.items()}
    return out


def write_kspace_file(path: Path | str, kspace: np.ndarray, attrs: dict, **datasets: np.ndarray) -> Path:
    """Write atomically; `datasets` may hold any of OPTIONAL_DATASETS."""
    import h5py

    path = Path(path)
    unknown = set(datasets) - set(OPTIONAL_DATASETS)
    if unknown:
        raise ValueError(f"unknown k-space datasets {sorted(unknown)}")
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ValueError(f"kspace must be complex [slices, coils, H, W], got {kspace.dtype} {kspace.shape}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        chunks = (1,) + kspace.shape[1:]
        f.create_dataset("kspace", data=kspace.astype(np.complex64), chunks=chunks,
                         compression="gzip", compression_opts=4, shuffle=True)
        for name, array in datasets.items():
            if array is None:
                continue
            dtype = np.uint8 if name in ("mask", "segmentation") else np.complex64
            f.create_dataset(name, data=np.asarray(array).astype(dtype), compression="gzip",
                             compression_opts=4, shuffle=True)
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


def _plain(value: object) -> object:
    """h5py attribute values as plain Python (numbers, strings, lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
