"""Attention U-Net: logits for any H, W, channel doubling, attention gates in (0, 1), gradients, learning."""

import pytest
import torch

from autopipe.models.attention_unet import AttentionGate, AttentionUNet2d
from autopipe.train.loss import dice_ce_loss


@pytest.mark.parametrize(("shape", "poolings"), [((2, 1, 21, 18), 2), ((1, 1, 16, 16), 2), ((1, 3, 13, 9), 3)])
def test_logits_have_the_input_size_for_any_height_and_width(shape, poolings):
    torch.manual_seed(0)
    net = AttentionUNet2d(in_channels=shape[1], num_classes=3, channels=4, poolings=poolings)
    logits = net(torch.randn(shape))
    assert logits.shape == (shape[0], 3, *shape[2:]) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_channels_double_per_pooling():
    net = AttentionUNet2d(channels=4, poolings=2)
    assert [block[0].out_channels for block in net.encoder] == [4, 8, 16]
    assert [up.out_channels for up in net.upsamplers] == [4, 8]
    assert isinstance(net.encoder[0][2], torch.nn.LeakyReLU) and net.encoder[0][2].negative_slope == 0.2


def test_attention_gate_scales_the_skip_by_coefficients_in_zero_one():
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=4, gate_channels=8, inter_channels=2)
    skip, g = torch.randn(1, 4, 8, 6), torch.randn(1, 8, 4, 3)
    alpha = gate.coefficients(skip, g)
    assert alpha.shape == (1, 1, 8, 6) and (alpha > 0).all() and (alpha < 1).all()
    assert torch.allclose(gate(skip, g), skip * alpha)


def test_padding_does_not_leak_between_samples_and_every_parameter_gets_gradient():
    torch.manual_seed(0)
    net = AttentionUNet2d(channels=4)
    x = torch.randn(2, 1, 11, 10)
    logits = net(x)
    assert torch.allclose(net(x[1:]), logits[1:], atol=1e-5)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_input_channels_are_checked():
    with pytest.raises(ValueError, match="expected"):
        AttentionUNet2d(in_channels=1, channels=2)(torch.randn(1, 2, 8, 8))


def test_learns_a_square_on_one_image():
    torch.manual_seed(0)
    target = torch.zeros(1, 1, 15, 14, dtype=torch.long)
    target[..., 5:9, 6:10] = 1
    image = 0.5 + target.float() + 0.1 * torch.randn(1, 1, 15, 14)
    net = AttentionUNet2d(channels=4)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = dice_ce_loss(net(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
