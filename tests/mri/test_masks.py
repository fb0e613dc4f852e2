"""Undersampling masks: acceleration as requested, calibration centre, determinism, Poisson disc spacing."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from autopipe.mri.masks import (
    LINE_KINDS,
    MASK_KINDS,
    calibration_region,
    effective_acceleration,
    gaussian_mask,
    make_mask,
    normalized_radius,
    poisson_disc_mask,
    poisson_disc_radius,
    poisson_disc_samples,
)

SHAPES = [(96, 112), (192, 224), (256, 256)]
ACCELERATIONS = [4.0, 7.5, 8.0]
CALIBRATION = {"poisson": 24, "gaussian": 24, "equispaced": 8, "random": 8}


def _mask(kind, shape, acceleration=7.5, seed=0):
    return make_mask(kind, shape, acceleration, CALIBRATION[kind], seed)


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("acceleration", ACCELERATIONS)
def test_effective_acceleration_is_as_requested(kind, shape, acceleration):
    mask = _mask(kind, shape, acceleration)
    assert mask.dtype == bool
    assert mask.shape == ((shape[1],) if kind in LINE_KINDS else shape)
    assert effective_acceleration(mask) == pytest.approx(acceleration, rel=0.05)


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
def test_centre_is_fully_sampled(kind):
    shape = (96, 112)
    mask = _mask(kind, shape)
    size = CALIBRATION[kind]
    if kind in LINE_KINDS:
        assert mask[shape[1] // 2 - size // 2:shape[1] // 2 - size // 2 + size].all()
        assert mask.sum() > size
    else:
        assert mask[calibration_region(shape, size)].all()
        assert not mask.all()


@pytest.mark.parametrize("kind", sorted(MASK_KINDS))
def test_same_seed_same_mask_other_seed_other_mask(kind):
    shape = (96, 112)
    np.testing.assert_array_equal(_mask(kind, shape, seed=3), _mask(kind, shape, seed=3))
    assert not np.array_equal(_mask(kind, shape, seed=3), _mask(kind, shape, seed=4))


def test_calibration_region_holds_dc():
    for shape, size in [((96, 112), 24), ((9, 7), 3), ((8, 8), 1)]:
        region = calibration_region(shape, size)
        assert region.sum() == size * size and region[shape[0] // 2, shape[1] // 2]


def test_poisson_is_denser_near_the_centre():
    shape = (256, 256)
    mask = poisson_disc_mask(shape, 7.5, 24, seed=0)
    radius = normalized_radius(shape)
    points = np.argwhere(mask)
    gap = cKDTree(points).query(points, k=2)[0][:, 1]  # distance to the nearest other sample
    where = radius[mask]
    near, far = gap[(where > 0.25) & (where < 0.45)], gap[(where > 0.75) & (where < 0.95)]
    assert far.mean() > 1.3 * near.mean()
    assert mask[(radius > 0.25) & (radius < 0.45)].mean() > 1.5 * mask[(radius > 0.75) & (radius < 0.95)].mean()
    assert not mask[radius > 1].any()  # restricted to the inscribed ellipse


@pytest.mark.parametrize("min_distance", [1.5, 2.5])
def test_poisson_samples_keep_their_distance(min_distance):
    shape = (96, 112)
    mask = poisson_disc_samples(shape, min_distance, calibration_size=16, seed=1)
    radius = poisson_disc_radius(shape, min_distance)
    points = np.argwhere(mask & ~calibration_region(shape, 16))
    r = radius[mask & ~calibration_region(shape, 16)]
    pairs = cKDTree(points).query_pairs(r.max(), output_type="ndarray")
    distance = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    assert np.all(distance >= np.minimum(r[pairs[:, 0]], r[pairs[:, 1]]) - 1e-9)
    assert len(points) > 100


def test_gaussian_has_the_exact_sample_count():
    mask = gaussian_mask((96, 112), 7.5, 24, seed=0)
    assert mask.sum() == round(96 * 112 / 7.5)


def test_equispaced_lines_are_evenly_spread():
    mask = make_mask("equispaced", (96, 256), 8.0, 8, seed=2)
    center = np.zeros(256, bool)
    center[124:132] = True
    outer = np.flatnonzero(mask & ~center)
    gaps = np.diff(outer[outer < 124])
    assert gaps.max() - gaps.min() <= 1


def test_effective_acceleration_of_lines_and_broadcast():
    lines = np.zeros(100, bool)
    lines[::4] = True
    assert effective_acceleration(lines) == 4.0
    assert effective_acceleration(lines, shape=(30, 100)) == 4.0
    with pytest.raises(ValueError, match="samples nothing"):
        effective_acceleration(np.zeros((4, 4)))


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ValueError, match="equispaced, gaussian, poisson, random"):
        make_mask("radial", (96, 112), 4.0, 24, seed=0)


def test_impossible_requests_are_refused():
    with pytest.raises(ValueError, match="calibration"):
        poisson_disc_mask((96, 112), 20.0, 40, seed=0)
    with pytest.raises(ValueError, match="calibration"):
        gaussian_mask((96, 112), 20.0, 40, seed=0)
    with pytest.raises(ValueError, match="centre lines"):
        make_mask("random", (96, 112), 8.0, 24, seed=0)
    with pytest.raises(ValueError, match="acceleration"):
        make_mask("poisson", (96, 112), 0.5, 24, seed=0)
