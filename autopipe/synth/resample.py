"""Template-space maps onto a subject's image grid, with SimpleITK (fast, linear interpolation).

One sitk transform per subject maps image-world points to template-world points: the inverse pose
(an Euler3DTransform) followed by the deformation (a DisplacementFieldTransform on a 3 mm grid), see
autopipe.synth.geometry for the conventions. ITK works in LPS; this module converts at its edges, so
its callers see only RAS affines and (i, j, k)-ordered arrays.

Maps are resampled one scalar channel at a time: a vector image costs ~8x more per channel in ITK.
Before sampling a coarse grid, the 1 mm template maps are blurred to the output voxel size (box
average variance), so a 2 mm image shows 2 mm partial volume instead of aliased 1 mm edges.
"""

from __future__ import annotations

import functools

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from autopipe.synth.geometry import Grid, Pose
from autopipe.synth.template import load_template

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
SMOOTHED_CHANNELS = ("gm", "wm")  # fractions blurred to the output resolution; the distance map stays sharp


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A (i, j, k[, components]) array with a RAS affine as a sitk image (copied; ITK stores (k, j, i) and LPS)."""
    vector = array.ndim == 4
    order = (2, 1, 0, 3) if vector else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, order)), isVector=vector)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((_RAS_TO_LPS @ affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin((_RAS_TO_LPS @ affine[:3, 3]).tolist())
    return image


def warp_transform(pose: Pose, field: np.ndarray, field_grid: Grid) -> sitk.Transform:
    """The image-world -> template-world sitk transform: inverse pose, then x + u(x).

    field: float64 [nx, ny, nz, 3], RAS displacement (mm) on `field_grid` in template world.
    """
    matrix = pose.matrix()
    inverse = np.linalg.inv(matrix)
    rigid = sitk.Euler3DTransform()
    rigid.SetMatrix((_RAS_TO_LPS @ inverse[:3, :3] @ _RAS_TO_LPS).ravel().tolist())
    rigid.SetTranslation((_RAS_TO_LPS @ inverse[:3, 3]).tolist())
    vectors = to_sitk(field @ _RAS_TO_LPS, field_grid.affine)  # vector image: the last axis holds (L, P, S)
    vectors = sitk.Cast(vectors, sitk.sitkVectorFloat64)
    return sitk.CompositeTransform([sitk.DisplacementFieldTransform(vectors), rigid])  # rigid applies first


def resample(image: sitk.Image, grid: Grid, transform: sitk.Transform, default: float = 0.0) -> np.ndarray:
    """Linear interpolation of `image` at the template points of every voxel of `grid`: float32 (i, j, k)."""
    spacing = np.array(grid.spacing)
    direction = _RAS_TO_LPS @ grid.affine[:3, :3] / spacing
    out = sitk.Resample(image, [int(n) for n in grid.shape], transform, sitk.sitkLinear,
                        (_RAS_TO_LPS @ grid.affine[:3, 3]).tolist(), spacing.tolist(), direction.ravel().tolist(),
                        float(default), sitk.sitkFloat32)
    return np.ascontiguousarray(np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0)))


def antialias_sigma(grid: Grid) -> tuple[float, float, float]:
    """Gaussian sigma (mm) per template axis matching a box average over the grid's voxel (1 mm template).

    Each template axis takes the spacing of the grid axis most aligned with it (poses are within ~15 deg).
    """
    aligned = np.argmax(np.abs(grid.affine[:3, :3]), axis=1)
    spacing = np.asarray(grid.spacing)[aligned]
    return tuple(round(float(np.sqrt(max(s**2 - 1.0, 0.0) / 12.0)), 2) for s in spacing)


@functools.lru_cache(maxsize=8)
def template_channel(name: str, sigma_mm: tuple[float, float, float]) -> sitk.Image:
    """A template map (attribute `name` of Template) blurred by sigma_mm, as a sitk image; cached per process."""
    template = load_template()
    array = getattr(template, name).astype(np.float32)
    if any(sigma_mm):
        array = ndimage.gaussian_filter(array, sigma_mm)
    return to_sitk(array, template.affine)


def subgrid(grid: Grid, low_index: np.ndarray, high_index: np.ndarray) -> tuple[Grid, tuple[slice, ...]]:
    """The part of `grid` between voxel indices low and high (inclusive, clipped), and its slices into the grid."""
    low = np.clip(np.floor(low_index).astype(int), 0, np.array(grid.shape) - 1)
    high = np.clip(np.ceil(high_index).astype(int), 0, np.array(grid.shape) - 1)
    affine = grid.affine.copy()
    affine[:3, 3] = grid.world(low)
    return Grid(tuple(int(n) for n in high - low + 1), affine), tuple(slice(a, b + 1) for a, b in zip(low, high,
                                                                                                      strict=True))


def image_points(template_points: np.ndarray, pose: Pose, field: np.ndarray, field_grid: Grid,
                 iterations: int = 12) -> np.ndarray:
    """Where template points [..., 3] (RAS mm) appear in image world: invert x + u(x) by fixed-point iteration.

    Converges because |grad u| < 1 for the deformations sampled here; then applies the pose.
    """
    target = np.asarray(template_points, float)
    inverse_field = np.linalg.inv(field_grid.affine)
    z = target.copy()
    for _ in range(iterations):
        index = z @ inverse_field[:3, :3].T + inverse_field[:3, 3]
        u = np.stack([ndimage.map_coordinates(field[..., c], np.moveaxis(index, -1, 0), order=1, mode="nearest")
                      for c in range(3)], axis=-1)
        z = target - u
    matrix = pose.matrix()
    return z @ matrix[:3, :3].T + matrix[:3, 3]
