"""Reconstruction and multitask losses: increasing time-step weights, live cross-entropy, weights applied once."""

import math

import pytest
import torch
from torch.nn import functional

from autopipe.models.mtlrs import MultitaskOutput
from autopipe.train.loss import soft_dice_loss
from autopipe.train.recon_loss import multitask_loss, reconstruction_loss, segmentation_loss, time_step_weights


def test_time_step_weights_strictly_increase_and_sum_to_one():
    assert time_step_weights(1).tolist() == [1.0]
    for n in (2, 5, 40):
        w = time_step_weights(n)
        assert w.shape == (n,) and (w[1:] > w[:-1]).all()
        assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-6)
    w = time_step_weights(3)
    expected = torch.tensor([0.1, 10**-0.5, 1.0])
    assert torch.allclose(w, expected / expected.sum())
    assert math.isclose(w[-1].item() / w[0].item(), 10.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        time_step_weights(0)


def _constant(value: complex, shape=(1, 3, 4)) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.complex64)


def test_reconstruction_loss_weights_the_flattened_sequence_of_cascades_and_steps():
    estimates = [[_constant(1), _constant(2j)], [_constant(-3)]]  # magnitudes 1, 2, 3
    target = _constant(0)
    w = time_step_weights(3)
    expected = (w * torch.tensor([1.0, 2.0, 3.0])).sum()
    assert torch.allclose(reconstruction_loss(estimates, target), expected)
    # magnitudes are compared: a real target equal to |x| gives zero
    assert reconstruction_loss([[_constant(3j)]], torch.full((1, 3, 4), 3.0)).item() == pytest.approx(0.0, abs=1e-7)


def test_later_estimates_receive_more_gradient():
    first, last = _constant(2).requires_grad_(), _constant(2).requires_grad_()
    reconstruction_loss([[first], [last]], _constant(1)).backward()
    assert last.grad.abs().sum() > 5 * first.grad.abs().sum() > 0


def test_segmentation_loss_is_half_cross_entropy_half_dice_with_a_live_cross_entropy_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 5, 4, requires_grad=True)
    target = (torch.rand(2, 1, 5, 4) > 0.6).long()
    loss = segmentation_loss(logits, target)
    expected = 0.5 * functional.cross_entropy(logits, target[:, 0]) + 0.5 * soft_dice_loss(logits, target)
    assert torch.allclose(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (dice_grad,) = torch.autograd.grad(0.5 * soft_dice_loss(logits, target), logits)
    onehot = functional.one_hot(target[:, 0], 2).movedim(-1, 1).float()
    ce_grad = 0.5 * (logits.softmax(1) - onehot) / target.numel()  # analytic d(0.5 mean CE)/d logits
    assert torch.allclose(grad - dice_grad, ce_grad, atol=1e-6)
    assert ce_grad.abs().max() > 1e-3


def _dice_loss_of_half(n_lesion: int, n_pixels: int, smooth: float = 1e-5) -> float:
    """soft Dice loss when every pixel has lesion probability 0.5."""
    return 1 - (2 * 0.5 * n_lesion + smooth) / (0.5 * n_pixels + n_lesion + smooth)


def test_multitask_weights_are_applied_once_hand_computed():
    target_seg = torch.zeros(1, 1, 3, 4, dtype=torch.long)
    target_seg[..., 0, :2] = 1  # 2 lesion pixels of 12
    zero_logits = torch.zeros(1, 2, 3, 4)
    seg_term = 0.5 * math.log(2) + 0.5 * _dice_loss_of_half(2, 12)
    output = MultitaskOutput([[_constant(2), _constant(2)], [_constant(2)]], [zero_logits, zero_logits])
    total, parts = multitask_loss(output, _constant(1.5), target_seg)
    assert parts["segmentation"] == pytest.approx(seg_term, rel=1e-5)
    assert parts["reconstruction"] == pytest.approx(0.5, rel=1e-5)
    assert total.item() == pytest.approx(0.9 * seg_term + 0.1 * 0.5, rel=1e-5)
    assert parts["total"] == pytest.approx(total.item())
    total, _ = multitask_loss(output, _constant(1.5), target_seg, segmentation_weight=0.5, reconstruction_weight=2.0)
    assert total.item() == pytest.approx(0.5 * seg_term + 2.0 * 0.5, rel=1e-5)


def test_multitask_supervision_final_cascade_by_default_or_every_cascade_weighted_increasingly():
    target_seg = torch.zeros(1, 1, 3, 4, dtype=torch.long)
    target_seg[..., 0, :2] = 1
    confident = torch.zeros(1, 2, 3, 4)
    confident[:, 1] = 20 * target_seg[:, 0] - 10  # near-perfect logits: loss ~ 0
    half = 0.5 * math.log(2) + 0.5 * _dice_loss_of_half(2, 12)
    output = MultitaskOutput([[_constant(1)]], [torch.zeros(1, 2, 3, 4), confident])
    _, parts = multitask_loss(output, _constant(1), target_seg)  # final cascade only (the public code)
    assert parts["segmentation"] == pytest.approx(segmentation_loss(confident, target_seg).item(), rel=1e-5)
    _, parts = multitask_loss(output, _constant(1), target_seg, supervision="every_cascade")
    # weights over 2 cascades: (0.1, 1) / 1.1
    expected = half / 11 + (10 / 11) * segmentation_loss(confident, target_seg).item()
    assert parts["segmentation"] == pytest.approx(expected, rel=1e-5)
    assert parts["reconstruction"] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="supervision"):
        multitask_loss(output, _constant(1), target_seg, supervision="some")
