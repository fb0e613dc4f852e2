"""The U-Net geometry rules: nnU-Net's pooling topology, its memory proxy, training FLOPs, patch shrinking."""

import pytest

from autopipe.plan.topology import (
    feature_map_size,
    features_per_stage,
    get_pool_and_conv_props,
    shrink_patch,
    training_flops,
)


def test_isotropic_128_pools_five_times_per_axis():
    t = get_pool_and_conv_props((1.0, 1.0, 1.0), (128, 128, 128))
    assert t.num_pool_per_axis == (5, 5, 5)
    assert t.n_stages == 6
    assert t.strides[0] == (1, 1, 1) and set(t.strides[1:]) == {(2, 2, 2)}
    assert t.kernel_sizes == ((3, 3, 3),) * 6  # one per stage, the last for the bottleneck
    assert t.divisible_by == (32, 32, 32) and t.patch_size == (128, 128, 128)


def test_patch_is_padded_to_a_multiple_of_the_pooling():
    t = get_pool_and_conv_props((1.0, 1.0, 1.0), (36, 50, 35))
    assert t.num_pool_per_axis == (3, 3, 3)
    assert t.patch_size == (40, 56, 40)


def test_thick_slices_pool_in_plane_first_with_1x3x3_kernels():
    t = get_pool_and_conv_props((5.0, 0.45, 0.45), (16, 320, 320))
    assert t.strides[1] == (1, 2, 2) and t.strides[2] == (1, 2, 2)
    assert t.kernel_sizes[0] == (1, 3, 3)
    assert t.kernel_sizes[-1] == (3, 3, 3)
    assert t.n_stages == 7


@pytest.mark.parametrize(("size", "pools"), [(11, 0), (12, 1)])
def test_a_lone_poolable_axis_needs_three_times_the_minimum_size(size, pools):
    t = get_pool_and_conv_props((1.0, 1.0), (4, size))
    assert t.num_pool_per_axis == (0, pools)


def test_feature_map_size_by_hand():
    # encoder 2*2*64 + 2*4*16 = 384; decoder stage at 8x8: (2 convs + transposed) * 2 * 64 = 384; head 3 * 64
    size = feature_map_size((8, 8), ((1, 1), (2, 2)), (2, 4), num_classes=3)
    assert size == 384 + 384 + 192


def test_features_double_and_cap():
    assert features_per_stage(6, 3) == (32, 64, 128, 256, 320, 320)
    assert features_per_stage(7, 2) == (32, 64, 128, 256, 512, 512, 512)
    assert features_per_stage(6, 3, base_features=16) == (16, 32, 64, 128, 160, 160)


def test_training_flops_scale_with_batch_and_width():
    t = get_pool_and_conv_props((1.0, 1.0, 1.0), (64, 64, 64))
    wide = training_flops(t.patch_size, t, features_per_stage(t.n_stages, 3), 1, 2, batch_size=2)
    assert training_flops(t.patch_size, t, features_per_stage(t.n_stages, 3), 1, 2, batch_size=4) == 2 * wide
    narrow = training_flops(t.patch_size, t, features_per_stage(t.n_stages, 3, 16), 1, 2, batch_size=2)
    assert 0.2 < narrow / wide < 0.3  # conv cost ~ in x out channels


def test_shrink_patch_respects_the_floor():
    median = (78.0, 92.0, 74.0)
    t = get_pool_and_conv_props((2.0, 2.0, 2.0), (80, 96, 80))
    smaller = shrink_patch((2.0, 2.0, 2.0), t, median)
    assert smaller is not None and smaller.patch_size == (80, 96, 64)  # largest relative to the median first
    at_floor = get_pool_and_conv_props((2.0, 2.0, 2.0), (48, 48, 48))
    assert shrink_patch((2.0, 2.0, 2.0), at_floor, median, floor=(48, 48, 48)) is None
