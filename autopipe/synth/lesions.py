"""White-matter lesions in template space: how many, where, what shape, and their partial-volume map.

The burden is heavy-tailed across subjects: log(expected count) ~ N(LOG_BURDEN_MEAN, LOG_BURDEN_SD), so
about one subject in ten is nearly lesion-free and a few carry over fifty lesions. Each lesion is one
of three kinds:

    periventricular  ovoid "Dawson's finger": centre in the white matter within 10 mm of a lateral
                     ventricle, drawn closer to the wall; long axis along the wall's normal
    confluent        large flat cap hugging the ventricle wall (more frequent the higher the burden)
    deep             small, roundish, 10-30 mm from the ventricles

A lesion is an ellipsoid whose boundary is perturbed by a smooth random field (irregular outline),
rasterized with a one-voxel partial-volume ramp in its own small bounding box, and clipped to the
template's white-matter fraction: lesions only replace white matter. Parameters are drawn first
(`sample_lesions`, every value recorded), then `rasterize_lesions` is a deterministic function of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autopipe.synth.template import PERIVENTRICULAR_MM, Template

LOG_BURDEN_MEAN = 2.6
LOG_BURDEN_SD = 1.1
MAX_LESIONS = 150
DEEP_FRACTION = 0.12
NOISE_CORRELATION_MM = 1.5


@dataclass(frozen=True)
class Lesion:
    """One lesion: centre (template RAS mm), semi-axes (mm) along the columns of `axes` (unit vectors, RAS)."""

    kind: str
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]
    irregularity: float
    noise_seed: int


@dataclass(frozen=True)
class LesionParams:
    """A subject's lesion burden (log expected count), the drawn count, and the lesions."""

    log_burden: float
    lesions: tuple[Lesion, ...]


@dataclass(frozen=True)
class LesionMap:
    """Lesion fractions in [0, 1], float32, in a box of the template grid starting at voxel `offset`."""

    offset: tuple[int, int, int]
    fractions: np.ndarray

    def region(self) -> tuple[slice, ...]:
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.fractions.shape, strict=True))

    def affine(self, template: Template) -> np.ndarray:
        out = template.affine.copy()
        out[:3, 3] = template.world(np.array(self.offset))
        return out

    def volume_ml(self, template: Template, within: np.ndarray | None = None) -> float:
        """Lesion volume in mL, optionally only inside a template-space mask (bool, template shape)."""
        weights = self.fractions if within is None else self.fractions * within[self.region()]
        return float(weights.sum() * abs(np.linalg.det(template.affine[:3, :3])) / 1000.0)


def sample_lesions(rng: np.random.Generator, template: Template) -> LesionParams:
    """Draw a subject's lesions (see the module docstring for the model)."""
    log_burden = float(rng.normal(LOG_BURDEN_MEAN, LOG_BURDEN_SD))
    count = int(min(rng.poisson(np.exp(log_burden)), MAX_LESIONS))
    confluent_probability = min(0.35, np.exp(log_burden) / 150.0)
    periventricular = template.periventricular_voxels
    deep = template.deep_white_matter_voxels
    lesions = []
    for _ in range(count):
        draw = rng.uniform()
        if draw < DEEP_FRACTION:
            lesions.append(_deep_lesion(rng, template, deep))
        else:
            confluent = draw > 1.0 - confluent_probability
            lesions.append(_periventricular_lesion(rng, template, periventricular, confluent))
    return LesionParams(log_burden, tuple(lesions))


def _periventricular_lesion(rng: np.random.Generator, template: Template, candidates: np.ndarray,
                            confluent: bool) -> Lesion:
    """A finger (or, if `confluent`, a cap) with its first axis along the ventricle wall's normal.

    The size is drawn first; the centre is then drawn among candidates about one semi-axis from the wall
    (Gaussian weight, 1.5 mm wide), so the lesion starts at the ventricle and radiates outward.
    """
    if confluent:
        radius = rng.uniform(3.5, 7.0)
        semi = (0.6 * radius, 1.6 * radius, 1.0 * radius)
    else:
        radius = float(np.clip(rng.lognormal(np.log(2.6), 0.45), 0.8, 6.0))
        aspect = rng.uniform(1.3, 2.2)
        across = radius * aspect ** (-1 / 3)
        semi = (radius * aspect ** (2 / 3), across, across * rng.uniform(0.8, 1.2))
    target = min(semi[0] * rng.uniform(0.5, 1.0), PERIVENTRICULAR_MM)
    distance = template.ventricle_distance[tuple(candidates.T)]
    weights = np.exp(-0.5 * ((distance - target) / 1.5) ** 2)
    voxel = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
    centre = template.world(voxel + rng.uniform(-0.5, 0.5, 3))
    return Lesion("confluent" if confluent else "periventricular", _plain(centre), _plain(semi),
                  _frame(_wall_normal(template, voxel), rng), float(rng.uniform(0.15, 0.4)), int(rng.integers(2**31)))


def _deep_lesion(rng: np.random.Generator, template: Template, candidates: np.ndarray) -> Lesion:
    """A small roundish lesion in deep white matter, randomly oriented."""
    voxel = candidates[rng.integers(len(candidates))]
    centre = template.world(voxel + rng.uniform(-0.5, 0.5, 3))
    radius = float(np.clip(rng.lognormal(np.log(1.8), 0.45), 0.8, 5.0))
    aspect = rng.uniform(1.0, 1.6)
    semi = (radius * aspect ** (2 / 3), radius * aspect ** (-1 / 3), radius * aspect ** (-1 / 3))
    direction = rng.standard_normal(3)
    return Lesion("deep", _plain(centre), _plain(semi), _frame(direction / np.linalg.norm(direction), rng),
                  float(rng.uniform(0.15, 0.35)), int(rng.integers(2**31)))


def _wall_normal(template: Template, voxel: np.ndarray) -> np.ndarray:
    """Unit gradient of the distance to the ventricles at a voxel (central differences): away from the wall."""
    i, j, k = (int(v) for v in voxel)
    d = template.ventricle_distance
    gradient = np.array([d[i + 1, j, k] - d[i - 1, j, k], d[i, j + 1, k] - d[i, j - 1, k],
                         d[i, j, k + 1] - d[i, j, k - 1]], float) @ template.affine[:3, :3]
    norm = np.linalg.norm(gradient)
    return gradient / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _frame(first: np.ndarray, rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """Orthonormal axes (as rows) with the given first axis and a random roll about it."""
    helper = rng.standard_normal(3)
    second = np.cross(first, helper)
    second /= np.linalg.norm(second)
    third = np.cross(first, second)
    return tuple(_plain(v) for v in (first, second, third))


def _plain(values: np.ndarray | tuple) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def rasterize_lesions(params: LesionParams, template: Template) -> LesionMap:
    """The lesions' partial-volume fractions on the template grid, in the union of their bounding boxes.

    Each lesion: q = ellipsoidal radius (1 on the ellipsoid), boundary radius rho = 1 + irregularity * n
    (n a smooth unit-variance noise field), fraction = clip(0.5 - (q - rho) * mean semi-axis / 1 mm)
    (a one-voxel ramp), then the maximum over lesions, limited by the white-matter fraction.
    """
    if not params.lesions:
        return LesionMap((0, 0, 0), np.zeros((0, 0, 0), np.float32))
    boxes = [_box(lesion, template) for lesion in params.lesions]
    low = np.min([b[0] for b in boxes], axis=0)
    high = np.max([b[1] for b in boxes], axis=0)
    fractions = np.zeros(tuple(high - low), np.float32)
    for lesion, (box_low, box_high) in zip(params.lesions, boxes, strict=True):
        local = tuple(slice(a - o, b - o) for a, b, o in zip(box_low, box_high, low, strict=True))
        np.maximum(fractions[local], _lesion_fractions(lesion, template, box_low, box_high), out=fractions[local])
    region = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    np.minimum(fractions, template.wm[region], out=fractions)
    return LesionMap(tuple(int(v) for v in low), fractions)


def _box(lesion: Lesion, template: Template) -> tuple[np.ndarray, np.ndarray]:
    """Template voxel box [low, high) that holds the lesion with its perturbation and ramp."""
    reach = max(lesion.semi_axes_mm) * (1 + 3 * lesion.irregularity) + 2.0
    centre = template.index(np.array(lesion.centre_mm))
    low = np.clip(np.floor(centre - reach).astype(int), 0, None)
    high = np.minimum(np.ceil(centre + reach).astype(int) + 1, template.shape)
    return low, high


def _lesion_fractions(lesion: Lesion, template: Template, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high, strict=True)], indexing="ij"), -1)
    offset = template.world(grid) - np.array(lesion.centre_mm)
    local = offset @ np.array(lesion.axes).T  # coordinates along the lesion's axes
    q = np.sqrt(((local / np.array(lesion.semi_axes_mm)) ** 2).sum(-1))
    noise = ndimage.gaussian_filter(np.random.default_rng(lesion.noise_seed).standard_normal(q.shape),
                                    NOISE_CORRELATION_MM)
    noise /= max(float(noise.std()), 1e-6)
    rho = 1.0 + lesion.irregularity * noise
    scale = float(np.mean(lesion.semi_axes_mm))
    return np.clip(0.5 - (q - rho) * scale, 0.0, 1.0).astype(np.float32)
