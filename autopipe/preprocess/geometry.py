"""Grids, reorientation, and the bridge between Volumes (numpy + RAS affine) and ANTs images (LPS).

Every geometric step of preprocessing works in physical space: a Volume carries its affine from voxel
indices to RAS+ mm, ANTs (ITK) keeps origin, spacing and direction in LPS+ mm. The two differ by a
flip of the first two world axes, applied in `to_ants` and `from_ants` and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopipe.cohort.image_io import Volume, spacing_of

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A voxel grid in world space: shape and the affine from voxel indices to RAS+ mm."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, ...]:
        return spacing_of(self.affine)

    @staticmethod
    def of(volume: Volume) -> Grid:
        return Grid(tuple(int(s) for s in volume.shape[:3]), np.asarray(volume.affine, float))

    def crop(self, box: tuple[tuple[int, int], ...]) -> Grid:
        """The sub-grid of voxels [lo, hi) per axis; world positions of the voxels are unchanged."""
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ np.array([lo for lo, _ in box], float) + self.affine[:3, 3]
        return Grid(tuple(hi - lo for lo, hi in box), affine)

    def to_plain(self) -> dict:
        return {"shape": list(self.shape), "affine": np.round(self.affine, 6).tolist(),
                "spacing": [round(s, 6) for s in self.spacing]}

    @staticmethod
    def from_plain(value: dict) -> Grid:
        return Grid(tuple(int(s) for s in value["shape"]), np.asarray(value["affine"], float))


def resampled_grid(grid: Grid, spacing: tuple[float, ...]) -> Grid:
    """The grid covering the same field of view as `grid` (same first-voxel corner) at `spacing` mm.

    Axis directions are kept; the number of voxels per axis is the extent divided by the new spacing,
    rounded (at least 1).
    """
    old, new = np.array(grid.spacing), np.array(spacing, float)
    shape = tuple(max(1, int(round(n * o / s))) for n, o, s in zip(grid.shape, old, new, strict=True))
    directions = grid.affine[:3, :3] / old
    corner = grid.affine[:3, 3] - directions @ (old / 2)  # outer corner of the first voxel
    affine = np.eye(4)
    affine[:3, :3] = directions * new
    affine[:3, 3] = corner + directions @ (new / 2)
    return Grid(shape, affine)


def to_ants(volume: Volume, dtype: type = np.float32):
    """An ANTsImage with the Volume's voxels and world geometry (RAS affine -> LPS origin/direction)."""
    import ants

    spacing = np.array(spacing_of(volume.affine))
    direction = RAS_TO_LPS @ (volume.affine[:3, :3] / spacing)
    origin = RAS_TO_LPS @ volume.affine[:3, 3]
    data = np.ascontiguousarray(volume.data, dtype=dtype)
    return ants.from_numpy(data, origin=tuple(float(o) for o in origin), spacing=tuple(float(s) for s in spacing),
                           direction=direction)


def from_ants(image) -> Volume:
    """A Volume from an ANTsImage (LPS origin/direction -> RAS affine)."""
    spacing = np.array(image.spacing, float)
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ np.asarray(image.direction, float) * spacing
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(image.origin, float)
    return Volume(image.numpy(), affine)


def grid_image(grid: Grid):
    """An all-zero ANTsImage on `grid`: the reference (fixed) image that resampling fills."""
    return to_ants(Volume(np.zeros(grid.shape, np.float32), grid.affine))

