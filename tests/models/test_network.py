"""The plain U-Net: output shapes per plan, deep supervision on/off, input checks, gradients, the memory proxy."""

import pytest
import torch
from torch import nn

from autopipe.models.unet import PlainConvUNet, build_network, output_strides, parameter_count
from autopipe.plan.configs import SegmentationConfig

ISO_3D = dict(features_per_stage=(4, 8, 16, 32, 32), kernel_sizes=((3, 3, 3),) * 5,
              strides=((1, 1, 1),) + ((2, 2, 2),) * 4)
ANISO_3D = dict(features_per_stage=(2, 4, 8, 8), kernel_sizes=((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)),
                strides=((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2)))
PLAN_2D = dict(features_per_stage=(2, 4, 8), kernel_sizes=((3, 3),) * 3, strides=((1, 1), (2, 2), (2, 2)))


def _expected_shapes(x_shape, num_classes, strides):
    batch, spatial = x_shape[0], x_shape[2:]
    return [(batch, num_classes, *(n // f for n, f in zip(spatial, factor, strict=True)))
            for factor in output_strides(strides)]


@pytest.mark.parametrize(("plan", "x_shape"), [(ISO_3D, (2, 1, 32, 32, 32)), (ANISO_3D, (1, 2, 8, 32, 32)),
                                                (PLAN_2D, (3, 1, 16, 12))])
def test_deep_supervision_gives_one_output_per_decoder_stage_full_resolution_first(plan, x_shape):
    torch.manual_seed(0)
    net = PlainConvUNet(x_shape[1], 3, **plan)
    outputs = net(torch.randn(x_shape))
    assert isinstance(outputs, list) and len(outputs) == len(plan["strides"]) - 1
    assert [tuple(o.shape) for o in outputs] == _expected_shapes(x_shape, 3, plan["strides"])
    assert outputs[0].shape[2:] == x_shape[2:]


def test_anisotropic_output_strides_are_cumulative():
    assert output_strides(((1, 1, 1), (2, 2, 2), (2, 2, 2))) == [(1, 1, 1), (2, 2, 2)]
    assert output_strides(ANISO_3D["strides"]) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]
    assert output_strides(((1, 1), (2, 1))) == [(1, 1)]


def test_without_deep_supervision_one_tensor_and_no_coarse_heads():
    net = PlainConvUNet(1, 2, **PLAN_2D, deep_supervision=False)
    calls = []
    net.heads[1].register_forward_hook(lambda *_: calls.append(1))
    out = net(torch.randn(2, 1, 8, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 8, 8)
    assert calls == []


def test_deep_supervision_can_be_switched_off_after_construction():
    torch.manual_seed(0)
    net = PlainConvUNet(1, 2, **PLAN_2D).eval()
    x = torch.randn(1, 1, 8, 8)
    full_resolution = net(x)[0]
    net.deep_supervision = False
    torch.testing.assert_close(net(x), full_resolution)


def test_non_divisible_input_raises_naming_shape_and_divisor():
    net = PlainConvUNet(2, 2, **ANISO_3D)
    with pytest.raises(ValueError, match=r"\[8, 30, 32\].*\[2, 8, 8\]"):
        net(torch.randn(1, 2, 8, 30, 32))
    with pytest.raises(ValueError, match=r"\[1, 1, 8, 32, 32\]"):
        net(torch.randn(1, 1, 8, 32, 32))  # wrong channel count


def test_inconsistent_topology_raises_at_construction():
    with pytest.raises(ValueError, match="kernel_sizes"):
        PlainConvUNet(1, 2, (2, 4), ((3, 3),), ((1, 1), (2, 2)))
    with pytest.raises(ValueError, match=r"strides\[1\]"):
        PlainConvUNet(1, 2, (2, 4), ((3, 3), (3, 3)), ((1, 1), (2, 2, 2)))


def test_parameter_count_by_hand():
    # 2D, features (2, 4), one 3x3 conv per stage, 1 channel in, 2 classes:
    # enc0 conv 9*1*2+2 = 20, norm 4; enc1 conv 9*2*4+4 = 76, norm 8; transposed 2x2 4->2: 4*4*2+2 = 34;
    # dec0 conv 9*4*2+2 = 74, norm 4; head 1x1 2->2: 4+2 = 6  => 226
    net = PlainConvUNet(1, 2, (2, 4), ((3, 3), (3, 3)), ((1, 1), (2, 2)), n_conv_per_stage=1)
    assert parameter_count(net) == 226


def test_init_is_he_normal_with_zero_biases():
    net = PlainConvUNet(1, 2, **ISO_3D)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    big = net.encoder[4][3].weight  # 32 x 32 x 27 weights, fan_in 864: std sqrt(2 / 1.0001 / 864) ~ 0.048
    assert big.std().item() == pytest.approx((2 / (1 + 0.01**2) / 864) ** 0.5, rel=0.05)


def test_gradients_reach_the_first_convolution():
    torch.manual_seed(0)
    net = PlainConvUNet(1, 2, **PLAN_2D)
    sum(o.square().mean() for o in net(torch.randn(2, 1, 8, 8))).backward()
    first = net.encoder[0][0]
    assert first.weight.grad is not None and torch.count_nonzero(first.weight.grad) > 0
    assert all(h.weight.grad is not None for h in net.heads)


def test_build_network_from_a_plan_configuration():
    config = SegmentationConfig(
        spacing=(2.0, 1.0, 1.0), median_shape=(40.0, 60.0, 50.0), patch_size=(8, 16, 16), batch_size=2, n_stages=3,
        features_per_stage=(2, 4, 8), kernel_sizes=((1, 3, 3), (3, 3, 3), (3, 3, 3)),
        strides=((1, 1, 1), (1, 2, 2), (2, 2, 2)), epochs=1, iterations_per_epoch=1, seconds_per_iteration=1.0,
        training_hours=1.0)
    net = build_network(config, in_channels=2, num_classes=2)
    assert net.divisible_by == (2, 4, 4)
    assert net.encoder[0][0].kernel_size == (1, 3, 3) and net.upsamplers[0].stride == (1, 2, 2)
    outputs = net(torch.zeros(config.batch_size, 2, *config.patch_size))
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 8, 16, 16), (2, 2, 8, 8, 8)]


def test_feature_map_size_matches_the_conv_outputs_it_counts():
    """The planner's proxy sums channels x voxels over convs, transposed convs and the full-resolution head."""
    net = PlainConvUNet(1, 3, **ANISO_3D, deep_supervision=False)
    counted = []
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            m.register_forward_hook(lambda _m, _i, out: counted.append(out[0].numel()))
    net(torch.zeros(2, 1, 8, 16, 16))
    assert sum(counted) == net.feature_map_size((8, 16, 16))
