"""ESPIRiT coil maps: they recover simulated loop-coil maps up to a phase, so SENSE undoes full sampling."""

import numpy as np
import pytest

from autopipe.mri.coils import coil_geometry, coil_maps, pixel_points_mm
from autopipe.mri.espirit import calibration_matrix, espirit_kernel_size, espirit_maps
from autopipe.mri.fft import ifft2c
from autopipe.mri.operators import forward, normalize_maps, sense_combine

SHAPE, SPACING = (96, 80), (2.5, 2.5)
FOV = (SHAPE[0] * SPACING[0], SHAPE[1] * SPACING[1])
POINTS = pixel_points_mm(SHAPE, SPACING)


def _radius(points=POINTS):
    """Elliptical radius: 1 on the edge of a head-like ellipse that fills most of the field of view."""
    return np.hypot(points[..., 0] / (0.4 * FOV[0]), points[..., 1] / (0.4 * FOV[1]))


def _phantom(points=POINTS):
    """Smooth complex image inside the ellipse, zero outside: a textured magnitude and a slow phase ramp."""
    x, y = points[..., 0], points[..., 1]
    magnitude = (_radius(points) < 1) * (1.0 + 0.5 * np.cos(x / 15) * np.sin(y / 20))
    return (magnitude * np.exp(0.01j * x)).astype(np.complex64)


def _case(num_coils, seed=0, noise=0.0):
    """True normalized maps [C, H, W] and fully sampled k-space of the phantom."""
    maps = normalize_maps(coil_maps(coil_geometry(num_coils, FOV, seed), POINTS))
    kspace = forward(_phantom(), maps)
    if noise:
        rng = np.random.default_rng(seed)
        kspace = kspace + noise * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    return maps, kspace.astype(np.complex64)


def _relative_error(maps, kspace, inside):
    combined = np.abs(sense_combine(ifft2c(kspace), maps))
    truth = np.abs(_phantom())
    return np.linalg.norm((combined - truth)[inside]) / np.linalg.norm(truth[inside])


@pytest.mark.parametrize(("num_coils", "noise"), [(4, 0.0), (8, 0.0), (8, 0.01)])
def test_sense_with_estimated_maps_reproduces_the_image(num_coils, noise):
    true, kspace = _case(num_coils, seed=num_coils, noise=noise)
    estimate = espirit_maps(kspace, calibration_size=24)
    inside = _radius() < 0.95
    # measured: ~1e-5 without noise, 0.010 with noise 0.01 (the noise itself); all-equal maps ~0.5
    assert _relative_error(estimate, kspace, inside) < 0.01 + 1.5 * noise
    assert _relative_error(np.ones_like(true) / np.sqrt(num_coils), kspace, inside) > 0.3


def test_maps_match_the_truth_up_to_a_phase_per_pixel():
    true, kspace = _case(8, seed=3)
    estimate = espirit_maps(kspace, calibration_size=20, kernel_size=5)
    inside = _radius() < 0.95
    per_pixel = np.abs((true.conj() * estimate).sum(axis=0))  # unit vectors over coils: 1 = same up to a phase
    assert per_pixel[inside].min() > 0.999
    unrelated = np.abs((true.conj() * np.roll(estimate, 1, axis=0)).sum(axis=0))  # coils swapped: a wrong answer
    assert unrelated[inside].mean() < 0.9
    assert np.all(np.angle(estimate[0][inside]) == pytest.approx(0.0, abs=1e-5))  # relative to coil 0
    steps = np.abs(np.angle(estimate[:, 1:] * estimate[:, :-1].conj()))[:, inside[1:] & inside[:-1]]
    assert steps.max() < 0.5  # smooth: no phase jumps inside the object


def test_shapes_dtype_normalization_and_zero_background():
    _, kspace = _case(4, seed=1)
    estimate = espirit_maps(kspace, calibration_size=16)
    assert estimate.shape == kspace.shape and estimate.dtype == np.complex64
    total = (np.abs(estimate) ** 2).sum(axis=0)
    kept = total > 0
    np.testing.assert_allclose(total[kept], 1.0, rtol=1e-5)
    assert kept[_radius() < 0.95].all()
    assert not kept[_radius() > 1.3].any()

    batch = espirit_maps(np.stack([kspace, 2 * kspace]), calibration_size=16)  # [..., C, H, W] is looped
    assert batch.shape == (2, *kspace.shape)
    np.testing.assert_allclose(batch[0], estimate, atol=1e-6)
    np.testing.assert_allclose(batch[1], estimate, atol=1e-5)  # the maps do not depend on the signal level
    assert not espirit_maps(np.zeros_like(kspace), calibration_size=16).any()


def test_undersampled_data_with_a_full_calibration_region_give_the_same_maps():
    true, kspace = _case(6, seed=2)
    rng = np.random.default_rng(0)
    mask = rng.random(SHAPE) < 0.2
    mask[SHAPE[0] // 2 - 8:SHAPE[0] // 2 + 8, SHAPE[1] // 2 - 8:SHAPE[1] // 2 + 8] = True
    np.testing.assert_allclose(espirit_maps(kspace * mask, 16), espirit_maps(kspace, 16), atol=1e-5)


def test_calibration_matrix_rows_are_patches():
    calibration = np.arange(2 * 5 * 4).reshape(2, 5, 4).astype(np.complex64)
    matrix = calibration_matrix(calibration, 3)
    assert matrix.shape == (3 * 2, 2 * 9)
    np.testing.assert_array_equal(matrix[1].reshape(2, 3, 3), calibration[:, 0:3, 1:4])


@pytest.mark.parametrize(("calibration", "kernel"), [(24, 6), (12, 4), (8, 3), (4, 2), (1, 1)])
def test_kernel_size_follows_the_calibration_size(calibration, kernel):
    assert espirit_kernel_size(calibration) == kernel


@pytest.mark.parametrize(("kspace", "kwargs", "message"), [
    (np.zeros((4, 32, 32), np.complex64), {"calibration_size": 40}, "does not fit the 32x32"),
    (np.zeros((4, 32, 32), np.float32), {"calibration_size": 16}, "must be complex"),
    (np.zeros((32, 32), np.complex64), {"calibration_size": 16}, r"\[\.\.\., C, H, W\]"),
    (np.zeros((4, 32, 32), np.complex64), {"calibration_size": 8, "kernel_size": 10}, "kernel_size 10"),
    (np.zeros((4, 32, 32), np.complex64), {"calibration_size": 8, "eigen_threshold": 1.5}, "eigen_threshold"),
])
def test_bad_inputs_raise(kspace, kwargs, message):
    with pytest.raises(ValueError, match=message):
        espirit_maps(kspace, **kwargs)
