"""Foreground oversampling over the global sample stream, patch boxes, case and centre choice."""

import numpy as np
import pytest

from autopipe.train.sampling import FOREGROUND_RATE, choose_case_and_center, forced_foreground, sample_patch_box


def test_a_third_of_any_prefix_of_the_stream_is_forced():
    forced = np.array([forced_foreground(i) for i in range(3000)])
    assert forced.sum() == 1000
    counts = np.cumsum(forced)
    n = np.arange(1, 3001)
    assert np.all(np.abs(counts - n * FOREGROUND_RATE) <= 1)


@pytest.mark.parametrize("batch_size", [2, 12])
def test_the_pattern_does_not_depend_on_the_batch_size(batch_size):
    per_batch = [forced_foreground(k * batch_size + j) for k in range(3000 // batch_size) for j in range(batch_size)]
    assert per_batch == [forced_foreground(i) for i in range(len(per_batch))]


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_other_rates_are_exact(rate):
    assert sum(forced_foreground(i, rate) for i in range(400)) == round(400 * rate)


def test_invalid_rate_raises():
    with pytest.raises(ValueError, match="rate"):
        forced_foreground(0, 1.5)


def test_random_boxes_lie_inside_a_larger_case_and_hold_a_smaller_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        start = np.array(sample_patch_box((20, 24, 22), (8, 8, 8), rng))
        assert np.all(start >= 0) and np.all(start + 8 <= (20, 24, 22))
        start = np.array(sample_patch_box((20, 24, 22), (32, 32, 32), rng))
        assert np.all(start <= 0) and np.all(start + 32 >= (20, 24, 22))


def test_random_boxes_cover_the_whole_range():
    rng = np.random.default_rng(0)
    starts = {sample_patch_box((10,), (8,), rng) for _ in range(200)}
    assert starts == {(0,), (1,), (2,)}


def test_centred_boxes_contain_their_centre():
    rng = np.random.default_rng(0)
    shape, size = (20, 24, 22), (8, 16, 32)
    for center in [(0, 0, 0), (19, 23, 21), (10, 3, 11), (4, 12, 7)] + [tuple(rng.integers(shape)) for _ in range(50)]:
        start = np.array(sample_patch_box(shape, size, rng, center))
        assert np.all(start <= center) and np.all(np.array(center) < start + size)
    assert sample_patch_box(shape, (8, 8, 8), rng, (10, 12, 11)) == (6, 8, 7)  # interior: centre at size // 2


def test_forced_samples_are_centred_on_a_lesion_voxel_of_a_case_that_has_one():
    lesions = [np.zeros((0, 3), int), np.array([[1, 2, 3], [4, 5, 6]]), np.zeros((0, 3), int)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        case, center = choose_case_and_center(lesions, True, rng)
        assert case == 1 and center in {(1, 2, 3), (4, 5, 6)}
    chosen = {choose_case_and_center(lesions, False, rng) for _ in range(100)}
    assert chosen == {(0, None), (1, None), (2, None)}


def test_without_any_lesion_a_forced_sample_stays_random():
    lesions = [np.zeros((0, 3), int)] * 2
    assert choose_case_and_center(lesions, True, np.random.default_rng(0))[1] is None
