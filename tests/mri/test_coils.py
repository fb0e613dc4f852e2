"""Simulated loop coils: geometry, smooth maps that cover the head, loop falloff; the calibration estimator."""

import json
from dataclasses import asdict

import numpy as np
import pytest

from autopipe.mri.coils import CoilGeometry, coil_geometry, coil_maps, estimate_maps_calibration, pixel_points_mm
from autopipe.mri.operators import forward, normalize_maps

SHAPE, SPACING = (96, 112), (2.0, 2.0)
FOV = (SHAPE[0] * SPACING[0], SHAPE[1] * SPACING[1])


def _head(points, scale=1.0):
    """Inside of an ellipse filling most of the field of view, like a head."""
    return (points[..., 0] / (0.4 * FOV[0])) ** 2 + (points[..., 1] / (0.4 * FOV[1])) ** 2 < scale


def _phantom(points):
    """A head-sized ellipse with a bright and a dark inclusion, real and non-negative."""
    x, y = points[..., 0], points[..., 1]
    image = 1.0 * _head(points)
    image += 0.5 * (((x - 20) / 20) ** 2 + ((y + 10) / 30) ** 2 < 1)
    image -= 0.6 * (((x + 25) / 15) ** 2 + ((y - 30) / 12) ** 2 < 1)
    return image


@pytest.mark.parametrize("num_coils", [1, 8, 12, 32])
def test_geometry_is_deterministic_and_json_ready(num_coils):
    geometry = coil_geometry(num_coils, FOV, seed=5)
    assert geometry.num_coils == num_coils and len(geometry.phase_offsets) == num_coils
    assert geometry == coil_geometry(num_coils, FOV, seed=5) != coil_geometry(num_coils, FOV, seed=6)
    restored = CoilGeometry(**json.loads(json.dumps(asdict(geometry))))
    assert restored == geometry and hash(restored) == hash(geometry)
    heights = np.array(geometry.positions_mm)[:, 2]
    assert (np.ptp(heights) > geometry.radius_mm) == (num_coils >= 12)  # two rings from 12 coils


@pytest.mark.parametrize("num_coils", [4, 8, 16, 32])
def test_maps_cover_every_pixel_smoothly(num_coils):
    points = pixel_points_mm(SHAPE, SPACING)
    maps = coil_maps(coil_geometry(num_coils, FOV, seed=0), points)
    assert maps.shape == (num_coils, *SHAPE) and maps.dtype == np.complex64
    assert np.isfinite(maps).all()
    strongest = np.abs(maps).max(axis=0)
    assert strongest.min() > 0.005 * strongest.max()  # no pixel out of reach of every coil
    peak = np.abs(maps).max(axis=(1, 2))[:, None, None]
    head = _head(points, scale=1.0)
    for axis in (1, 2):
        step = np.abs(np.diff(maps, axis=axis)) / peak
        inside = head[1:, :] & head[:-1, :] if axis == 1 else head[:, 1:] & head[:, :-1]
        assert step[:, inside].max() < 0.08  # 2 mm apart: a few percent of the coil's peak at most


def test_maps_fall_off_like_a_loop_along_its_axis():
    geometry = CoilGeometry(positions_mm=((100.0, 0.0, 0.0),), radius_mm=20.0, phase_offsets=(0.0,))
    depth = np.array([0.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    sensitivity = np.abs(coil_maps(geometry, np.stack([100.0 - depth, 0 * depth, 0 * depth], axis=-1))[0])
    assert sensitivity[0] == pytest.approx(1.0, rel=1e-5)  # unit field at the loop centre
    assert np.all(np.diff(sensitivity) < 0)
    assert sensitivity[4] / sensitivity[5] == pytest.approx(8.0, rel=0.15)  # dipole far field, 1/d^3


def test_phase_varies_across_the_field_of_view():
    maps = coil_maps(coil_geometry(8, FOV, seed=0), pixel_points_mm(SHAPE, SPACING))
    phase = np.angle(maps[:, _head(pixel_points_mm(SHAPE, SPACING))])
    assert np.all(np.ptp(phase, axis=1) > 0.5)


def test_calibration_estimate_reproduces_the_true_maps():
    points = pixel_points_mm(SHAPE, SPACING)
    true = normalize_maps(coil_maps(coil_geometry(16, FOV, seed=1), points))
    image = _phantom(points)
    inside = _head(points, scale=0.8)
    kspace = forward(image.astype(np.complex64), true)
    estimate = estimate_maps_calibration(kspace, calibration_size=24)
    assert estimate.shape == true.shape
    np.testing.assert_allclose((np.abs(estimate) ** 2).sum(axis=0)[inside], 1.0, rtol=1e-4)
    per_pixel = np.abs((true.conj() * estimate).sum(axis=0))  # unit vectors over coils: 1 = same up to a phase
    assert per_pixel[inside].mean() > 0.99 and per_pixel[inside].min() > 0.9
    common = np.abs(np.vdot(true[:, inside], estimate[:, inside]))
    assert common / np.sqrt(inside.sum() * inside.sum()) > 0.9  # one common phase for a real object

    smooth_phase = np.exp(1j * 0.02 * points[..., 0])  # object phase goes into the estimate, the same for all coils
    shifted = estimate_maps_calibration(forward(image * smooth_phase, true), calibration_size=24)
    assert np.abs((true.conj() * shifted).sum(axis=0))[inside].mean() > 0.99


def test_calibration_threshold_blanks_the_background():
    points = pixel_points_mm(SHAPE, SPACING)
    maps = coil_maps(coil_geometry(8, FOV, seed=2), points)
    kspace = forward(_phantom(points), maps)
    estimate = estimate_maps_calibration(kspace[None], calibration_size=24, threshold=0.05)[0]
    assert np.all(estimate[:, ~_head(points, scale=1.5)] == 0)
    assert np.all(np.abs(estimate[:, _head(points, scale=0.8)]).sum(axis=0) > 0)


def test_map_residual_is_small_for_the_true_maps_and_large_for_wrong_ones():
    """The true maps explain the calibration images up to their smoothing; maps of another array do not."""
    from autopipe.mri.coils import map_residual

    points = pixel_points_mm(SHAPE, SPACING)
    truth = normalize_maps(coil_maps(coil_geometry(8, FOV, 3), points))
    kspace = forward(_phantom(points).astype(np.complex64), truth)
    wrong = np.roll(truth, 1, axis=0)  # each coil gets its neighbour's map
    assert map_residual(kspace, estimate_maps_calibration(kspace, 24), 24) < 1e-6  # spans them by construction
    assert map_residual(kspace, truth, 24) < 0.15
    assert map_residual(kspace, wrong, 24) > 0.5
