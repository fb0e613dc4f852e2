"""Where a synthetic head sits and how its anatomy differs from the template: pose, deformation, image grid.

Conventions (RAS millimetres throughout, like NIfTI):
    template world  x_t: ICBM152 2009 coordinates
    image world     x_i: the scanner coordinates of the synthetic scan
    pose            x_i = R x_t + t (a rigid motion of the head in the scanner)
    deformation     the subject's anatomy at template point x_t is the template's at x_t + u(x_t)
So the image voxel at x_i shows the template at T(x_i) = R^T (x_i - t) + u(R^T (x_i - t)).

u is a smooth random field (cubic B-spline on a control grid, RMS `rms_mm`), plus an isotropic
scaling about the brain's centre (head size) and a push towards the ventricles (ventricle size).
Everything is sampled first (the small dataclasses below, all JSON-ready) and then applied by
deterministic functions, so a subject can be regenerated from its recorded parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.synth.fields import control_positions, evaluate_field
from autopipe.synth.template import Template

FIELD_SPACING_MM = 3.0  # the displacement field's grid: fine enough that linear interpolation is exact to ~0.1 mm
FIELD_MARGIN_MM = 15.0
VENTRICLE_PUSH_DECAY_MM = 12.0  # how far from the ventricle wall an enlargement still moves tissue
VENTRICLE_PUSH_SIGMA_MM = 4.0
CONTROL_SMOOTHING = 1.0  # Gaussian sigma (control spacings) applied to the random control values
THICK_SLICE_MM = 2.5  # thicker slices are supersampled and averaged (see supersampling)


@dataclass(frozen=True)
class Pose:
    """Rigid head pose: rotations (degrees) about the R, A, S axes (pitch, roll, yaw) and a translation (mm)."""

    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]

    def matrix(self) -> np.ndarray:
        """4x4 template world -> image world (RAS mm): x_i = R x_t + t, R = Rz(yaw) Ry(roll) Rx(pitch)."""
        pitch, roll, yaw = np.radians(self.rotation_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        ry = np.array([[np.cos(roll), 0, np.sin(roll)], [0, 1, 0], [-np.sin(roll), 0, np.cos(roll)]])
        rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        out = np.eye(4)
        out[:3, :3] = rz @ ry @ rx
        out[:3, 3] = self.translation_mm
        return out


@dataclass(frozen=True)
class Deformation:
    """Anatomical variation: smooth random field (seed, control spacing, RMS), head scale, ventricle enlargement."""

    seed: int
    control_mm: float
    rms_mm: float
    scale: float
    ventricle_dilation_mm: float
    centre_mm: tuple[float, float, float]


@dataclass(frozen=True)
class Grid:
    """An image grid: shape and the affine from voxel indices to image-world RAS mm."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def world(self, index: np.ndarray) -> np.ndarray:
        """Voxel indices [..., 3] -> image-world RAS mm [..., 3]."""
        return np.asarray(index, float) @ self.affine[:3, :3].T + self.affine[:3, 3]


def sample_pose(rng: np.random.Generator, max_rotation_deg: tuple[float, float, float] = (10.0, 6.0, 10.0),
                max_translation_mm: float = 10.0) -> Pose:
    """Uniform rotations within +-max_rotation_deg (pitch, roll, yaw) and translations within +-max_translation_mm."""
    rotation = rng.uniform(-1, 1, 3) * np.asarray(max_rotation_deg)
    translation = rng.uniform(-max_translation_mm, max_translation_mm, 3)
    return Pose(tuple(float(v) for v in rotation), tuple(float(v) for v in translation))


# A brain's volume goes with scale^3: 1.06^3 = 1.19 times the template's, inside the plausibility check's
# 1.25 (autopipe.preprocess.plausibility) with room for the random field. At 1.1, 5 of 150 subjects drew
# brains of 1.23-1.29 times the template, and preprocessing rightly refused them.
SCALE_LIMITS = (0.9, 1.06)


def sample_deformation(rng: np.random.Generator, template: Template) -> Deformation:
    """Random field of 1.5-3 mm RMS on a 9 mm control grid; head scale N(1, 0.04) within SCALE_LIMITS;
    ventricles up to ~2 mm wider."""
    centre = template.brain_centre_mm
    return Deformation(seed=int(rng.integers(2**31)), control_mm=9.0, rms_mm=float(rng.uniform(1.5, 3.0)),
                       scale=float(np.clip(rng.normal(1.0, 0.04), *SCALE_LIMITS)),
                       ventricle_dilation_mm=float(rng.uniform(0.0, 3.0)),
                       centre_mm=tuple(float(v) for v in centre))


def field_grid(template: Template) -> Grid:
    """The displacement field's grid: the template's box plus a margin, FIELD_SPACING_MM, axis-aligned."""
    low = template.world(np.zeros(3)) - FIELD_MARGIN_MM
    high = template.world(np.array(template.shape) - 1) + FIELD_MARGIN_MM
    shape = tuple(int(n) for n in np.ceil((high - low) / FIELD_SPACING_MM) + 1)
    affine = np.diag([FIELD_SPACING_MM] * 3 + [1.0])
    affine[:3, 3] = low
    return Grid(shape, affine)


def displacement_field(deformation: Deformation, template: Template) -> tuple[np.ndarray, Grid]:
    """u on the field grid: float64 [nx, ny, nz, 3] in RAS mm (template world), and that grid."""
    grid = field_grid(template)
    axes = [control_positions(n, FIELD_SPACING_MM, deformation.control_mm) for n in grid.shape]
    control = np.random.default_rng(deformation.seed).standard_normal([n for _, n in axes] + [3])
    control = ndimage.gaussian_filter(control, (CONTROL_SMOOTHING,) * 3 + (0,))
    smooth = evaluate_field(control, [p for p, _ in axes], np.float64)
    smooth *= deformation.rms_mm / np.sqrt((smooth**2).sum(-1).mean())
    points = grid.world(np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), axis=-1))
    scaling = (1.0 / deformation.scale - 1.0) * (points - np.asarray(deformation.centre_mm))
    push = -deformation.ventricle_dilation_mm * ventricle_push(template, grid)
    return smooth + scaling + push, grid


def ventricle_push(template: Template, grid: Grid) -> np.ndarray:
    """Direction away from the ventricles, float64 [nx, ny, nz, 3] on `grid`, |push| <= ~1, fading with distance.

    Sampling the template at x - a * push(x) moves the ventricle walls outward by about a mm. It is the
    gradient of the signed distance to the ventricles blurred by VENTRICLE_PUSH_SIGMA_MM: near the walls a
    unit normal, smoothly going to zero on the ventricles' midlines (no fold where the normals meet).
    """
    index = template.index(grid.world(np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"),
                                               axis=-1)))
    distance = ndimage.map_coordinates(template.ventricle_distance, np.moveaxis(index, -1, 0), order=1,
                                       mode="nearest")
    distance = ndimage.gaussian_filter(distance, VENTRICLE_PUSH_SIGMA_MM / np.asarray(grid.spacing))
    gradient = np.stack(np.gradient(distance, *grid.spacing), axis=-1)
    fade = np.exp(-np.clip(distance, 0, None) / VENTRICLE_PUSH_DECAY_MM)[..., None]
    return gradient * fade


def head_box(template: Template, pose: Pose, deformation: Deformation, head_mm: float,
             truncation_mm: float, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Image-world box (low, high RAS mm) that holds the head, truncated at the bottom like a real FOV.

    The head is every template point within `head_mm` of the brain; its posed and scaled points give
    the box, plus `margin_mm` of air. The bottom edge is raised `truncation_mm` above the lowest
    height at which the template still holds the whole head cross-section, so the template's own
    bottom edge is never in view.
    """
    step = 4
    sub = template.signed_distance[::step, ::step, ::step] <= head_mm
    points = template.world(np.argwhere(sub) * step)
    centre = np.asarray(deformation.centre_mm)
    posed = (centre + (points - centre) * deformation.scale) @ pose.matrix()[:3, :3].T + pose.matrix()[:3, 3]
    low, high = posed.min(0) - margin_mm, posed.max(0) + margin_mm
    bottom = points[:, 2] <= points[:, 2].min() + step
    low[2] = posed[bottom, 2].max() + truncation_mm
    return low, high


def output_grid(low: np.ndarray, high: np.ndarray, spacing: tuple[float, float, float], axcodes: str) -> Grid:
    """A grid covering the image-world box [low, high] with `spacing` (mm per array axis) in orientation `axcodes`.

    axcodes as nibabel writes them ("RAS", "LPS", "PIR", ...): the world direction each array axis
    points to. Axis lengths are rounded up to even numbers (k-space centre at N/2).
    """
    try:
        ornt = nib.orientations.axcodes2ornt(tuple(axcodes.upper()))
    except Exception as exc:
        raise ValueError(f"orientation {axcodes!r} is not a valid 3-letter axis code like 'RAS' or 'LPS'") from exc
    if len(axcodes) != 3 or np.isnan(ornt).any() or sorted(ornt[:, 0].astype(int)) != [0, 1, 2]:
        raise ValueError(f"orientation {axcodes!r} is not a valid 3-letter axis code like 'RAS' or 'LPS'")
    centre = (np.asarray(low) + np.asarray(high)) / 2
    affine = np.diag([0.0, 0.0, 0.0, 1.0])
    shape = []
    for axis, (world_axis, sign) in enumerate(ornt.astype(int)):
        n = int(np.ceil((high[world_axis] - low[world_axis]) / spacing[axis]))
        n += n % 2
        shape.append(n)
        affine[world_axis, axis] = sign * spacing[axis]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2)
    return Grid(tuple(shape), affine)


def supersampling(grid: Grid) -> tuple[Grid, tuple[int, int, int]]:
    """A grid with every thick-slice axis split into finer samples, and the factor per axis.

    An axis is thick when its spacing exceeds THICK_SLICE_MM and 1.5x the finest axis (isotropic coarse
    grids rely on the anti-aliasing blur instead); it is split into samples as fine as the finest axis,
    but not finer than 1 mm. Averaging each run of `factor` fine samples gives the thick voxel's
    partial volume.
    """
    spacing = np.asarray(grid.spacing)
    finest = max(spacing.min(), 1.0)
    thick = (spacing > THICK_SLICE_MM) & (spacing >= 1.5 * spacing.min())
    factors = tuple(int(np.ceil(s / finest - 1e-6)) if t else 1 for s, t in zip(spacing, thick, strict=True))
    affine = grid.affine.copy()
    affine[:3, :3] = grid.affine[:3, :3] @ np.diag([1.0 / f for f in factors])
    offset = np.array([(1.0 / f - 1.0) / 2 for f in factors])  # first fine sample, in coarse voxel units
    affine[:3, 3] = grid.world(offset)
    shape = tuple(n * f for n, f in zip(grid.shape, factors, strict=True))
    return Grid(shape, affine), factors


def average_blocks(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean over runs of `factors[a]` consecutive samples along each axis a (undoes `supersampling`)."""
    for axis, f in enumerate(factors):
        if f > 1:
            shape = array.shape[:axis] + (array.shape[axis] // f, f) + array.shape[axis + 1:]
            array = array.reshape(shape).mean(axis=axis + 1)
    return array
