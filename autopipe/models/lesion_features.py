"""Lesion maps in matrix form: a subject's template-space lesion mask as lesion mL per coarse cell, plus summaries.

The hand-function classifier sees each subject as one row: the lesion volume (mL) in every cell of a coarse
grid laid over the template (cells of ~`grid_mm`, e.g. 6 mm = 3x3x3 voxels of 2 mm), kept only for the cells
that contain brain, and lesion-load summaries (total mL, number of lesions, largest lesion mL). One
coefficient per cell then reads as "log-odds of impairment per mL of lesion in this cell" and can be put back
into template space (autopipe.evaluate.coefficient_map).

Geometry: a cell (i, j, k) is the block of fine voxels [f*i, f*(i+1)) per axis (f = the axis' factor); the
coarse affine maps a cell index to the world position of the centre of its block. Blocks at the far border
may stick out of the fine grid; the missing voxels count as empty (no lesion, no brain).
Lesions are 26-connected components, counted as in prediction and evaluation (autopipe.predict.postprocess).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from autopipe.cohort.image_io import spacing_of
from autopipe.preprocess.labels import components

if TYPE_CHECKING:
    from autopipe.preprocess.properties import CaseProperties

LESION_MAP = "lesion_map"
SUMMARY_FEATURES = {"lesion_load": "lesion_load_ml", "lesion_count": "lesion_count",
                    "largest_lesion": "largest_lesion_ml"}  # plan feature name -> lesion_summaries key
FEATURES = (LESION_MAP, *SUMMARY_FEATURES)


@dataclass(frozen=True)
class CoarseGrid:
    """Cells of `factor` fine voxels per axis over a fine (template-space) grid.

    `affine` maps a cell index to the world (RAS mm) centre of its block of fine voxels; `shape` is
    ceil(fine_shape / factor). Equal when the shapes match and the affines agree to 1e-6 mm.
    """

    factor: tuple[int, int, int]
    shape: tuple[int, int, int]
    affine: np.ndarray
    fine_shape: tuple[int, int, int]
    fine_affine: np.ndarray

    def __post_init__(self) -> None:
        for name in ("factor", "shape", "fine_shape"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"{name} must be three positive integers, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        for name in ("affine", "fine_affine"):
            value = np.array(getattr(self, name), dtype=float)
            if value.shape != (4, 4):
                raise ValueError(f"{name} must be 4x4, got shape {value.shape}")
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CoarseGrid):
            return NotImplemented
        return (self.factor == other.factor and self.shape == other.shape and self.fine_shape == other.fine_shape
                and np.allclose(self.affine, other.affine, rtol=0, atol=1e-6)
                and np.allclose(self.fine_affine, other.fine_affine, rtol=0, atol=1e-6))

    def __hash__(self) -> int:
        return hash((self.factor, self.shape, self.fine_shape))

    @property
    def fine_voxel_ml(self) -> float:
        """Volume of one fine voxel in mL (|det| of the fine affine's 3x3 part / 1000)."""
        return abs(float(np.linalg.det(self.fine_affine[:3, :3]))) / 1000

    @property
    def cell_mm(self) -> tuple[float, ...]:
        """Edge lengths of a cell in mm."""
        return spacing_of(self.affine)

    def to_json(self) -> dict:
        """Plain lists, for a model JSON file; `from_json` reads it back."""
        return {"factor": list(self.factor), "shape": list(self.shape), "affine": self.affine.tolist(),
                "fine_shape": list(self.fine_shape), "fine_affine": self.fine_affine.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> CoarseGrid:
        return cls(tuple(d["factor"]), tuple(d["shape"]), np.asarray(d["affine"], float),
                   tuple(d["fine_shape"]), np.asarray(d["fine_affine"], float))


def coarse_grid(fine_shape: Sequence[int], fine_affine: np.ndarray, grid_mm: float) -> CoarseGrid:
    """Cells of ~`grid_mm` over a fine grid: factor_i = max(1, round(grid_mm / spacing_i)), halves rounded up.

    Spacing is the fine affine's column norms. Cell (0, 0, 0) covers fine voxels [0, f) per axis, so its
    centre is fine index (f - 1) / 2: with 2 mm voxels and f = 3 the coarse origin lies 2 mm past the fine one.
    """
    if not grid_mm > 0:
        raise ValueError(f"grid_mm must be > 0, got {grid_mm}")
    fine_shape = tuple(int(s) for s in fine_shape)
    fine_affine = np.asarray(fine_affine, float)
    if len(fine_shape) != 3 or fine_affine.shape != (4, 4):
        raise ValueError(f"need a 3D shape and a 4x4 affine, got {fine_shape} and {fine_affine.shape}")
    factor = tuple(max(1, math.floor(grid_mm / s + 0.5)) for s in spacing_of(fine_affine))
    shape = tuple(-(-n // f) for n, f in zip(fine_shape, factor, strict=True))
    f = np.array(factor, float)
    affine = fine_affine.copy()
    affine[:3, :3] = fine_affine[:3, :3] * f  # column i scaled: one cell step = f fine steps along axis i
    affine[:3, 3] = fine_affine[:3, :3] @ ((f - 1) / 2) + fine_affine[:3, 3]
    return CoarseGrid(factor, shape, affine, fine_shape, fine_affine)


def on_full_grid(array: np.ndarray, properties: CaseProperties) -> np.ndarray:
    """A case's array on its `grid` placed into `full_grid` (zeros outside `crop_box`), same dtype.

    The last three axes are the grid's (leading axes, e.g. image channels, are kept). ValueError when the
    array's shape is not the crop box's (or the properties' `grid` shape) or the box leaves the full grid.
    """
    array = np.asarray(array)
    full = properties.full_grid.shape
    box = list(properties.crop_box)
    size = tuple(hi - lo for lo, hi in box)
    if len(box) != 3 or any(lo < 0 or hi > n or lo >= hi for (lo, hi), n in zip(box, full, strict=True)):
        raise ValueError(f"crop box {box} does not lie inside the full grid {full}")
    grid_shape = properties.grid.shape
    if array.ndim < 3 or array.shape[-3:] != size or grid_shape != size:
        raise ValueError(f"array of shape {array.shape} does not fit the crop box {box} (size {size}, "
                         f"grid {grid_shape})")
    out = np.zeros(array.shape[:-3] + full, dtype=array.dtype)
    out[(..., *(slice(lo, hi) for lo, hi in box))] = array
    return out


def _cell_sums(values: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """Sum of a fine-grid array over each cell's block (float64), the border blocks zero-padded."""
    if values.shape != grid.fine_shape:
        raise ValueError(f"array of shape {values.shape} is not on the fine grid {grid.fine_shape}")
    padded_shape = tuple(c * f for c, f in zip(grid.shape, grid.factor, strict=True))
    padded = np.zeros(padded_shape, np.float64)
    padded[tuple(slice(0, n) for n in values.shape)] = values
    (cx, cy, cz), (fx, fy, fz) = grid.shape, grid.factor
    return padded.reshape(cx, fx, cy, fy, cz, fz).sum(axis=(1, 3, 5))


def pool_ml(mask: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """Lesion mL per cell (coarse shape, float64) of a binary mask on the fine grid."""
    return _cell_sums(np.asarray(mask) > 0, grid) * grid.fine_voxel_ml


def cell_fraction(region: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """Fraction (0..1) of each cell's f_x f_y f_z fine voxels inside a binary region; padding counts as outside."""
    return _cell_sums(np.asarray(region) > 0, grid) / float(np.prod(grid.factor))


def sample_nearest(data: np.ndarray, affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Values of `data` (voxel -> world `affine`) at world points [3, ...]: the voxel each point falls in, 0 outside.

    scipy map_coordinates, order 0, 'grid-constant', so edge voxels reach to their outer faces.
    """
    points = np.asarray(world, float).reshape(3, -1)
    inverse = np.linalg.inv(np.asarray(affine, float))
    coords = inverse[:3, :3] @ points + inverse[:3, 3:]
    data = np.asarray(data)
    values = ndimage.map_coordinates(data.astype(np.uint8) if data.dtype == bool else data, coords, order=0,
                                     mode="grid-constant", cval=0)
    return values.reshape(np.shape(world)[1:])


def nearest_on_grid(data: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray
                    ) -> np.ndarray:
    """`data` (on `affine`) resampled onto the grid (`shape`, `target_affine`), nearest neighbour by world
    coordinates, 0 outside it; a slab at a time, which keeps the coordinate arrays small at 1 mm."""
    shape = tuple(int(s) for s in shape)
    target_affine = np.asarray(target_affine, float)
    out = np.zeros(shape, np.asarray(data).dtype)
    jk = np.indices(shape[1:], dtype=float).reshape(2, -1)
    for i in range(shape[0]):
        ijk = np.vstack([np.full(jk.shape[1], float(i)), jk])
        world = target_affine[:3, :3] @ ijk + target_affine[:3, 3:]
        out[i] = sample_nearest(data, affine, world).reshape(shape[1:])
    return out


def template_brain_on_grid(template: str, fine_shape: Sequence[int], fine_affine: np.ndarray) -> np.ndarray:
    """The template's brain mask (uint8) on a fine grid (nearest_on_grid), from the shipped resolution nearest
    the grid's finest spacing."""
    from autopipe.templates import load_template, nearest_resolution

    fine_affine = np.asarray(fine_affine, float)
    _, mask = load_template(template, nearest_resolution(min(spacing_of(fine_affine))))
    return nearest_on_grid(mask.data.astype(np.uint8), mask.affine, fine_shape, fine_affine)


def brain_cells(brain: np.ndarray, grid: CoarseGrid, min_fraction: float = 0.0) -> np.ndarray:
    """Sorted flat (C-order) indices of the cells whose brain fraction exceeds `min_fraction`."""
    return np.flatnonzero(cell_fraction(brain, grid).ravel() > min_fraction).astype(np.int64)


def lesion_summaries(mask: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Total lesion mL, number of lesions (26-connected components) and the largest lesion's mL; zeros if empty."""
    labels, n = components(np.asarray(mask) > 0)
    if n == 0:
        return {"lesion_load_ml": 0.0, "lesion_count": 0.0, "largest_lesion_ml": 0.0}
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return {"lesion_load_ml": float(sizes.sum()) * voxel_ml, "lesion_count": float(n),
            "largest_lesion_ml": float(sizes.max()) * voxel_ml}


def feature_vector(mask: np.ndarray, grid: CoarseGrid, cells: np.ndarray,
                   features: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """One subject's features (float64) and their names, from a lesion mask on the full fine grid.

    `features` are plan names, in the order wanted: "lesion_map" gives pool_ml(mask).ravel()[cells] named
    "cell_<flat index>"; "lesion_load", "lesion_count", "largest_lesion" give the summary named by its key
    in SUMMARY_FEATURES. ValueError for an unknown or repeated name, or a mask not on grid.fine_shape.
    """
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown lesion feature(s) {unknown}; known: {list(FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"lesion features repeat: {list(features)}")
    mask = np.asarray(mask)
    if mask.shape != grid.fine_shape:
        raise ValueError(f"lesion mask of shape {mask.shape} is not on the template grid {grid.fine_shape}")
    cells = np.asarray(cells, dtype=np.int64)
    values: list[np.ndarray] = []
    names: list[str] = []
    summaries = None
    for feature in features:
        if feature == LESION_MAP:
            values.append(pool_ml(mask, grid).ravel()[cells])
            names += [f"cell_{c}" for c in cells]
        else:
            if summaries is None:
                summaries = lesion_summaries(mask, grid.fine_voxel_ml)
            key = SUMMARY_FEATURES[feature]
            values.append(np.array([summaries[key]]))
            names.append(key)
    vector = np.concatenate(values).astype(np.float64) if values else np.zeros(0, np.float64)
    return vector, names


def smooth_cells(values: np.ndarray, grid: CoarseGrid, cells: np.ndarray, sigma_mm: float) -> np.ndarray:
    """Per-cell values (rows of `len(cells)` columns, or one such vector) blurred over the coarse grid.

    Each row is placed on the grid (zero outside `cells`), filtered by a Gaussian of `sigma_mm` per axis
    (sigma_mm / cell edge in cells; scipy, truncated at 4 sigma, zero beyond the grid) and read back at
    `cells`. The operator is linear and symmetric, so a classifier fitted on blurred lesion maps, weights w,
    equals one with weights smooth_cells(w) on the raw maps: x_blur . w = x . blur(w). sigma 0 is the identity.
    """
    if not sigma_mm >= 0:
        raise ValueError(f"sigma_mm must be >= 0, got {sigma_mm}")
    array = np.asarray(values, np.float64)
    rows = np.atleast_2d(array)
    cells = np.asarray(cells, np.int64)
    if rows.ndim != 2 or rows.shape[1] != cells.size:
        raise ValueError(f"values of shape {array.shape} do not have one column per cell ({cells.size})")
    if sigma_mm == 0:
        return array.copy()
    sigma = [sigma_mm / edge for edge in grid.cell_mm]
    out = np.empty_like(rows)
    volume = np.zeros(int(np.prod(grid.shape)), np.float64)
    for i, row in enumerate(rows):
        volume[:] = 0.0
        volume[cells] = row
        out[i] = ndimage.gaussian_filter(volume.reshape(grid.shape), sigma, mode="constant").ravel()[cells]
    return out.reshape(array.shape)
