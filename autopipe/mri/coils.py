"""Receive coil sensitivities: simulated loop-coil arrays for synthetic data, and an estimate from k-space.

Physical frame (millimetres): x and y span the axial image plane, x along the image's first in-plane
axis (H) and y along the second (W), z runs through the slices; the origin is the centre of the
field of view, where the head is. `pixel_points_mm` builds such points for an image grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ellipe, ellipk

from autopipe.mri.fft import ifft2c
from autopipe.mri.masks import calibration_region
from autopipe.mri.operators import normalize_maps, rss

RING_SCALE = 0.5
"""Semi-axes of the coil ring as a fraction of the field of view: the inscribed ellipse, around the scalp."""
LOOP_OVERLAP = 1.5
"""Centre spacing of neighbouring loops in loop radii: the overlap that decouples circular loops."""
WIRE_SOFTENING = 0.2
"""Effective conductor half-width in loop radii: keeps the field finite and smooth next to the wire."""
TWO_RINGS_FROM = 12
"""Arrays of this many coils or more are split into two rings, above and below the central axial plane."""


@dataclass(frozen=True)
class CoilGeometry:
    """A ring array of circular loop coils, each facing the z axis.

    positions_mm: C loop centres (x, y, z) in mm. radius_mm: loop radius in mm, the same for every coil.
    phase_offsets: C receive-chain phases in radians. A loop's axis is horizontal and points from its
    centre towards the z axis. Fields are stored as tuples of plain floats, so `dataclasses.asdict`
    gives JSON-ready values and a geometry read back from JSON compares equal.
    """

    positions_mm: tuple[tuple[float, float, float], ...]
    radius_mm: float
    phase_offsets: tuple[float, ...]

    def __post_init__(self) -> None:
        positions = tuple(tuple(float(v) for v in p) for p in self.positions_mm)
        phases = tuple(float(v) for v in self.phase_offsets)
        if any(len(p) != 3 for p in positions) or len(phases) != len(positions) or not positions:
            raise ValueError(f"a coil geometry needs C >= 1 positions (x, y, z) and C phase offsets, got "
                             f"{len(positions)} positions and {len(phases)} phases")
        if any(np.hypot(p[0], p[1]) == 0 for p in positions):
            raise ValueError("a coil centre on the z axis has no direction to face")
        object.__setattr__(self, "positions_mm", positions)
        object.__setattr__(self, "radius_mm", float(self.radius_mm))
        object.__setattr__(self, "phase_offsets", phases)

    @property
    def num_coils(self) -> int:
        return len(self.positions_mm)


def coil_geometry(num_coils: int, fov_mm: tuple[float, float], seed: int) -> CoilGeometry:
    """A head-coil-like ring array for an axial field of view of fov_mm = (extent along x, along y) in mm.

    Coils sit evenly on the ellipse with semi-axes RING_SCALE * fov: one ring at z = 0, or from
    TWO_RINGS_FROM coils two rings at z = +-0.75 loop radius, staggered in angle. The loop radius follows
    from LOOP_OVERLAP so that neighbours overlap as in a real array (at most a quarter of the smaller FOV).
    The seed draws the ring's rotation, small jitters of angle and z, and the receive phases, so that
    every synthetic subject gets a slightly different coil.
    """
    if num_coils < 1:
        raise ValueError(f"num_coils must be >= 1, got {num_coils}")
    rng = np.random.default_rng(seed)
    semi_x, semi_y = RING_SCALE * fov_mm[0], RING_SCALE * fov_mm[1]
    rings = [num_coils] if num_coils < TWO_RINGS_FROM else [(num_coils + 1) // 2, num_coils // 2]
    perimeter = np.pi * (3 * (semi_x + semi_y) - np.sqrt((3 * semi_x + semi_y) * (semi_x + 3 * semi_y)))
    radius = min(perimeter / rings[0] / LOOP_OVERLAP, 0.25 * min(fov_mm))
    heights = [0.0] if len(rings) == 1 else [0.75 * radius, -0.75 * radius]
    rotation = rng.uniform(0, 2 * np.pi)
    positions = []
    for ring, (count, z) in enumerate(zip(rings, heights, strict=True)):
        step = 2 * np.pi / count
        angles = rotation + step * (np.arange(count) + 0.5 * ring) + rng.uniform(-0.05, 0.05, count) * step
        zs = z + rng.uniform(-0.05, 0.05, count) * radius
        positions += [(semi_x * np.cos(a), semi_y * np.sin(a), h) for a, h in zip(angles, zs, strict=True)]
    phases = rng.uniform(-np.pi, np.pi, num_coils)
    return CoilGeometry(tuple(positions), radius, tuple(phases))


def coil_maps(geometry: CoilGeometry, points_mm: np.ndarray) -> np.ndarray:
    """Sensitivities of the coils at physical points [..., 3] (mm): complex64 [C, ...], not normalized.

    By reciprocity a coil receives from a point in proportion to the transverse field it would make
    there: S_c = (B_x - i B_y) exp(i phase_c), B the quasi-static field of a circular current loop (exact,
    via elliptic integrals). So the magnitude falls off like a real loop's (~1/distance^3 far away) and
    the phase turns with the field direction. Units: the field at the loop's own centre is 1.
    """
    points = np.asarray(points_mm, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points_mm must be [..., 3] (x, y, z in mm), got shape {points.shape}")
    maps = np.empty((geometry.num_coils, *points.shape[:-1]), np.complex64)
    a = geometry.radius_mm
    centre_field = _loop_field(a, np.zeros(1), np.zeros(1))[1][0]
    for c, (centre, phase) in enumerate(zip(geometry.positions_mm, geometry.phase_offsets, strict=True)):
        axis = -np.array([centre[0], centre[1], 0.0]) / np.hypot(centre[0], centre[1])
        offset = points - np.array(centre)
        along = offset @ axis
        across = offset - along[..., None] * axis
        rho = np.linalg.norm(across, axis=-1)
        b_rho, b_axis = _loop_field(a, rho, along)
        field = (b_axis[..., None] * axis + b_rho[..., None] * across / np.maximum(rho, 1e-9 * a)[..., None])
        maps[c] = (field[..., 0] - 1j * field[..., 1]) * np.exp(1j * phase) / centre_field
    return maps


def estimate_maps_calibration(kspace: np.ndarray, calibration_size: int, *, threshold: float = 0.0) -> np.ndarray:
    """Coil maps [..., C, H, W] complex from centred k-space [..., C, H, W] by the calibration-image method.

    The fully sampled calibration square (calibration_size^2 at the k-space centre), tapered by a Hann
    window centred on DC and zero-filled, gives low-resolution coil images I_c = S_c x_low. Dividing by
    their root sum of squares cancels the object x_low (up to its phase) and leaves S_c normalized to
    sum_c |S_c|^2 = 1. The taper suppresses Gibbs ringing, which would otherwise not cancel near edges.
    Maps are zero where the RSS is at most `threshold` times its maximum over each [H, W] plane
    (background, where the ratio is noise). numpy only.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim < 3:
        raise ValueError(f"kspace must be [..., C, H, W], got shape {kspace.shape}")
    if calibration_size < 1:
        raise ValueError(f"calibration_size must be >= 1, got {calibration_size}")
    H, W = kspace.shape[-2:]
    window = np.outer(_hann_about_dc(H, calibration_size), _hann_about_dc(W, calibration_size))
    window *= calibration_region((H, W), calibration_size)
    low_resolution = ifft2c(kspace * window)
    total = rss(low_resolution)
    support = total > threshold * total.max(axis=(-2, -1), keepdims=True)
    return normalize_maps(low_resolution, support=support)


def pixel_points_mm(shape: tuple[int, int], spacing_mm: tuple[float, float], z_mm: float = 0.0) -> np.ndarray:
    """Physical centres of the pixels of an [H, W] image in the coil frame: float64 [H, W, 3] in mm.

    The origin is the geometric centre of the image; every pixel gets the slice position `z_mm`.
    """
    H, W = shape
    x = (np.arange(H) - (H - 1) / 2) * spacing_mm[0]
    y = (np.arange(W) - (W - 1) / 2) * spacing_mm[1]
    xx, yy = np.meshgrid(x, y, indexing="ij")
    return np.stack([xx, yy, np.full_like(xx, z_mm)], axis=-1)


def _loop_field(a: float, rho: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial and axial field of a unit-current loop of radius a at cylindrical (rho, z), up to mu0 / pi.

    The closed form with complete elliptic integrals. The conductor is softened by evaluating at
    z^2 + (WIRE_SOFTENING a)^2 for z^2: finite on the wire, and still zero radial field on the axis.
    """
    z2 = z**2 + (WIRE_SOFTENING * a) ** 2
    alpha2 = (a - rho) ** 2 + z2
    beta2 = (a + rho) ** 2 + z2
    k, e = ellipk(1.0 - alpha2 / beta2), ellipe(1.0 - alpha2 / beta2)
    scale = 1.0 / (2.0 * alpha2 * np.sqrt(beta2))
    b_axis = scale * ((a**2 - rho**2 - z2) * e + alpha2 * k)
    b_rho = scale * z * ((a**2 + rho**2 + z2) * e - alpha2 * k) / np.maximum(rho, 1e-9 * a)
    return b_rho, b_axis


def _hann_about_dc(n: int, size: int) -> np.ndarray:
    """A Hann taper of length n peaking at DC (index n//2), zero at +-(size + 1) / 2: positive over the
    `size` calibration samples, which are all that is used of it."""
    k = np.arange(n) - n // 2
    return 0.5 * (1 + np.cos(2 * np.pi * k / (size + 1)))


def map_residual(kspace: np.ndarray, maps: np.ndarray, calibration_size: int) -> float:
    """How much of the calibration data coil maps fail to explain: ||I - S S^H I|| / ||I||, in [0, 1].

    I are the low-resolution coil images of the (Hann-tapered) calibration square. Maps that span the
    coil images leave little (a few percent: noise and the maps' own smoothing); maps that went wrong,
    e.g. an ESPIRiT eigenvector picked from a near-flat spectrum with few coils, leave much more.
    """
    H, W = kspace.shape[-2:]
    window = np.outer(_hann_about_dc(H, calibration_size), _hann_about_dc(W, calibration_size))
    window *= calibration_region((H, W), calibration_size)
    images = ifft2c(np.asarray(kspace) * window)
    projected = maps * (maps.conj() * images).sum(axis=-3, keepdims=True)
    return float(np.linalg.norm(images - projected) / max(np.linalg.norm(images), 1e-30))
