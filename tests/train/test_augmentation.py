"""Augmentation settings, read size, and the batchgenerators pipeline applied as a pure function of a seed."""

import math
import random

import numpy as np
import pytest

from autopipe.train.augmentation import AugmentationSettings, augment, read_size, training_transforms

EVERYTHING = AugmentationSettings(rotation_p=1, scaling_p=1, elastic=True, elastic_p=1, noise_p=1, blur_p=1,
                                  brightness_p=1, contrast_p=1, low_resolution_p=1, gamma_inverted_p=0.5, gamma_p=1)


@pytest.mark.parametrize("patch", [(16, 16, 16), (8, 24, 16), (32, 24), (5, 7, 9)])
def test_read_size_holds_the_patch_and_centres_it(patch):
    settings = AugmentationSettings()
    size = read_size(patch, settings)
    assert len(size) == len(patch)
    assert all(k <= n <= settings.max_read_factor * k for n, k in zip(size, patch, strict=True))
    assert all((n - k) % 2 == 0 for n, k in zip(size, patch, strict=True))


def test_read_size_bounds_the_rotated_and_scaled_patch():
    only_rotation = AugmentationSettings(scaling_p=0)
    assert all(n >= math.ceil(31 * math.sqrt(2) + 1) for n in read_size((32, 32), only_rotation))  # the diagonal
    assert read_size((16, 16, 16), AugmentationSettings(rotation_p=0)) == (22, 22, 22)  # 15 * 1.4 + 1 = 22
    assert read_size((16, 16, 16), AugmentationSettings(rotation_p=0, scaling_p=0)) == (16, 16, 16)


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="rotation_p"):
        AugmentationSettings(rotation_p=1.5)
    with pytest.raises(ValueError, match="scaling"):
        AugmentationSettings(scaling=(1.4, 0.7))


def _batch(patch, channels=2, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    size = read_size(patch, EVERYTHING)
    data = rng.normal(size=(batch, channels, *size)).astype(np.float32)
    seg = np.zeros((batch, 1, *size), np.uint8)
    seg[(slice(None), 0, *(slice(n // 2 - 3, n // 2 + 3) for n in size))] = 1
    return data, seg


@pytest.mark.parametrize("patch", [(16, 16, 16), (24, 16)])
def test_every_transform_keeps_the_shape_and_a_binary_seg(patch):
    data, seg = _batch(patch)
    out_data, out_seg = augment(data, seg, training_transforms(patch, EVERYTHING), np.random.SeedSequence(1))
    assert out_data.shape == (2, 2, *patch) and out_data.dtype == np.float32 and np.isfinite(out_data).all()
    assert out_seg.shape == (2, 1, *patch) and out_seg.dtype == np.uint8
    assert set(np.unique(out_seg)) <= {0, 1} and out_seg.any()


def test_augmentation_is_a_pure_function_of_its_seed_and_leaves_the_global_state_alone():
    transforms = training_transforms((16, 16, 16), EVERYTHING)
    data, seg = _batch((16, 16, 16))
    np.random.seed(7)
    random.seed(7)
    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    first = augment(data.copy(), seg.copy(), transforms, np.random.SeedSequence(3))
    again = augment(data.copy(), seg.copy(), transforms, np.random.SeedSequence(3))
    other = augment(data.copy(), seg.copy(), transforms, np.random.SeedSequence(4))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert np.array_equal(np.random.get_state()[1], numpy_before) and random.getstate() == python_before
