"""Multicoil k-space for a slab of a subject's slices, for the reconstruction task.

    y_c = F(S_c z) + n_c      z: noise-free complex FLAIR slice, S_c: coil c's sensitivity (normalized,
                              sum_c |S_c|^2 = 1), F: centred orthonormal 2D FFT, n_c ~ CN(0, 2 sigma^2)

This is autopipe.mri.operators.forward without a mask. Because F is unitary and the maps are
normalized, the SENSE combination of fully sampled y has the same noise level sigma as the stored
magnitude image, so |reconstruction_sense| looks like the image's slices (with its own noise draw).

Slices run along the image array axis closest to superior-inferior (`slice_axis`) and are centred on
the lateral ventricles, where the lesions are. Coil maps come from autopipe.mri.coils at the voxels'
physical positions in the coil frame (x along H, y along W, z along the slices, origin at the centre
of the image grid); they are not stored (the pipeline must estimate them): the coil geometry is
recorded in the ground truth, and `slab_coil_maps` regenerates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopipe.errors import AutopipeError
from autopipe.mri.coils import CoilGeometry, coil_geometry, coil_maps, pixel_points_mm
from autopipe.mri.masks import LINE_KINDS, effective_acceleration, make_mask
from autopipe.mri.operators import adjoint, forward, normalize_maps
from autopipe.synth.geometry import Grid

SUPERIOR_INFERIOR = ("S", "I")


@dataclass(frozen=True)
class KspaceParams:
    """Everything random about a subject's k-space: coil array, sampling mask, noise."""

    num_coils: int
    coil_seed: int
    mask_type: str
    acceleration: float
    calibration_size: int | None  # None: default_calibration_size for the matrix
    mask_seed: int
    noise_seed: int
    num_slices: int


def sample_kspace_params(rng: np.random.Generator, num_coils: int, mask_type: str, acceleration: float,
                         calibration_size: int | None, num_slices: int) -> KspaceParams:
    """Seeds for the coils, mask and noise; the rest comes from the options."""
    return KspaceParams(num_coils, int(rng.integers(2**31)), mask_type, float(acceleration), calibration_size,
                        int(rng.integers(2**31)), int(rng.integers(2**31)), int(num_slices))


def default_calibration_size(mask_type: str, matrix: tuple[int, int]) -> int:
    """Fully sampled centre: ~8% of the smaller matrix side (2D masks, >= 8, even) or ~4% of W lines (>= 4)."""
    if mask_type in LINE_KINDS:
        return max(4, round(0.04 * matrix[1]))
    return max(8, 2 * round(0.04 * min(matrix)))


def slice_axis(axcodes: str) -> int:
    """The array axis that runs superior-inferior in an orientation code like 'RAS' or 'LPS'."""
    for axis, letter in enumerate(axcodes.upper()):
        if letter in SUPERIOR_INFERIOR:
            return axis
    raise ValueError(f"orientation {axcodes!r} has no superior-inferior axis")


def slab_indices(centre: float, depth: int, count: int) -> np.ndarray:
    """`count` consecutive voxel indices centred on `centre`, shifted to lie within [0, depth)."""
    count = min(count, depth)
    start = int(np.clip(round(centre - (count - 1) / 2), 0, depth - count))
    return np.arange(start, start + count)


def take_slices(volume: np.ndarray, axis: int, indices: np.ndarray) -> np.ndarray:
    """Slices of a 3D array as [slices, H, W]: slice s is volume.take(indices[s], axis)."""
    return np.moveaxis(np.take(volume, indices, axis=axis), axis, 0)


def coil_frame_points(grid: Grid, axis: int, indices: np.ndarray) -> np.ndarray:
    """Physical positions (mm) of the slab's voxels in the coil frame: float64 [slices, H, W, 3]."""
    in_plane = [a for a in range(3) if a != axis]
    spacing = grid.spacing
    matrix = (grid.shape[in_plane[0]], grid.shape[in_plane[1]])
    centre = (grid.shape[axis] - 1) / 2
    return np.stack([pixel_points_mm(matrix, (spacing[in_plane[0]], spacing[in_plane[1]]),
                                     (float(i) - centre) * spacing[axis]) for i in indices])


def slab_geometry(params: KspaceParams, grid: Grid, axis: int) -> CoilGeometry:
    """The subject's coil array, sized to the in-plane field of view."""
    in_plane = [a for a in range(3) if a != axis]
    fov = tuple(grid.shape[a] * grid.spacing[a] for a in in_plane)
    return coil_geometry(params.num_coils, fov, params.coil_seed)


def slab_coil_maps(geometry: CoilGeometry, grid: Grid, axis: int, indices: np.ndarray) -> np.ndarray:
    """Normalized coil maps (sum_c |S_c|^2 = 1) of the slab: complex64 [slices, C, H, W]."""
    maps = coil_maps(geometry, coil_frame_points(grid, axis, indices))  # [C, slices, H, W]
    return normalize_maps(np.ascontiguousarray(np.moveaxis(maps, 0, 1))).astype(np.complex64)


def simulate_kspace(image: np.ndarray, maps: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Fully sampled noisy multicoil k-space [slices, C, H, W] complex64 from image [slices, H, W]."""
    clean = forward(image.astype(np.complex64), maps)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(clean.shape, np.float32) + 1j * rng.standard_normal(clean.shape, np.float32)
    return (clean + np.float32(sigma) * noise).astype(np.complex64)


def sense_reference(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The fully sampled SENSE image sum_c conj(S_c) F^-1 y_c: complex64 [slices, H, W]."""
    return adjoint(kspace, maps).astype(np.complex64)


def sampling_mask(params: KspaceParams, matrix: tuple[int, int]) -> tuple[np.ndarray, int, float]:
    """The acquisition's mask (bool [H, W], or [W] for line kinds), its calibration size and measured acceleration."""
    calibration = params.calibration_size or default_calibration_size(params.mask_type, matrix)
    try:
        mask = make_mask(params.mask_type, matrix, params.acceleration, calibration, params.mask_seed)
    except ValueError as exc:
        raise AutopipeError(f"a {params.mask_type} mask cannot sample the {matrix[0]}x{matrix[1]} k-space matrix "
                            f"at {params.acceleration:g}x ({exc})", where="autopipe synth",
                            fix="lower --acceleration or choose another --mask") from exc
    return mask, calibration, effective_acceleration(mask, matrix)
