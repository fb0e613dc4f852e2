"""Soft Dice + cross-entropy, deep supervision weighting and the online pseudo Dice, on hand-computed cases."""

import math

import pytest
import torch
from torch.nn import functional

from autopipe.train.loss import (
    confusion_counts,
    deep_supervision_loss,
    deep_supervision_weights,
    dice_ce_loss,
    downsample_target,
    pseudo_dice,
    soft_dice_loss,
)


def _two_class_logits(p_foreground):
    """Logits [B, 2, *] whose softmax gives foreground probability `p_foreground` [B, *]."""
    p = torch.as_tensor(p_foreground, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


# one 2x2 sample: foreground probabilities and target; sum(p t) = 1.4, sum(p) = 2.0, sum(t) = 2
P = [[0.8, 0.6], [0.4, 0.2]]
T = [[1, 1], [0, 0]]


def test_confident_correct_logits_give_zero_dice_and_cross_entropy():
    target = torch.tensor([[[[0, 1, 2], [2, 1, 0]]]])
    logits = 100.0 * functional.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_ce_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_by_hand_on_four_voxels():
    logits, target = _two_class_logits([P]), torch.tensor([[T]])
    # dice = 2 * 1.4 / (2.0 + 2) = 0.7
    assert soft_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(0.3)
    assert soft_dice_loss(logits, target).item() == pytest.approx(1 - (2.8 + 1e-5) / (4 + 1e-5))


def test_dice_ce_adds_voxel_mean_cross_entropy():
    logits, target = _two_class_logits([P]), torch.tensor([[T]])
    # probabilities of the true class: 0.8, 0.6, 0.6, 0.8
    cross_entropy = -(math.log(0.8) + math.log(0.6)) / 2
    dice = (2.8 + 1e-5) / (4 + 1e-5)
    assert dice_ce_loss(logits, target).item() == pytest.approx(1 - dice + cross_entropy)


def test_batch_dice_pools_an_empty_sample_per_sample_dice_scores_it_zero():
    # sample 2 has no lesion and predicts 0.1 everywhere: sum(p) = 0.4, sum(t) = 0, sum(p t) = 0
    logits = _two_class_logits([P, [[0.1, 0.1], [0.1, 0.1]]])
    target = torch.tensor([[T], [[[0, 0], [0, 0]]]])
    # batch: 2 * 1.4 / (2.4 + 2) = 7/11; per sample: (0.7 + 0) / 2
    assert soft_dice_loss(logits, target, batch_dice=True, smooth=0.0).item() == pytest.approx(4 / 11)
    assert soft_dice_loss(logits, target, batch_dice=False, smooth=0.0).item() == pytest.approx(0.65)


def test_mismatched_target_shape_raises():
    with pytest.raises(ValueError, match=r"\[1, 1, 2, 3\]"):
        soft_dice_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 2, 3))


@pytest.mark.parametrize(("n", "expected"), [
    (1, (1.0,)),
    (2, (1.0, 0.0)),
    (3, (2 / 3, 1 / 3, 0.0)),  # (1, 0.5, 0) / 1.5
    (5, (8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0)),  # (1, .5, .25, .125, 0) / 1.875
])
def test_deep_supervision_weights(n, expected):
    assert deep_supervision_weights(n) == pytest.approx(expected)


def test_downsample_target_takes_every_fth_voxel():
    target = torch.arange(16).reshape(1, 1, 4, 4)
    assert downsample_target(target, (2, 2)).tolist() == [[[[0, 2], [8, 10]]]]
    assert downsample_target(target, (1, 2)).shape == (1, 1, 4, 2)
    with pytest.raises(ValueError, match=r"\[4, 4\].*\[3, 1\]"):
        downsample_target(target, (3, 1))


def test_downsample_target_equals_nearest_interpolation():
    target = torch.randint(0, 3, (2, 1, 4, 8, 8)).float()
    expected = functional.interpolate(target, size=(4, 4, 2), mode="nearest")
    torch.testing.assert_close(downsample_target(target, (1, 2, 4)), expected)


def test_deep_supervision_loss_is_the_weighted_sum_and_skips_zero_weights():
    torch.manual_seed(0)
    target = torch.randint(0, 2, (2, 1, 8, 8))
    outputs = [torch.randn(2, 2, 8, 8), torch.randn(2, 2, 4, 4), torch.full((2, 2, 2, 2), float("nan"))]
    strides, weights = [(1, 1), (2, 2), (4, 4)], (2 / 3, 1 / 3, 0.0)
    expected = 2 / 3 * dice_ce_loss(outputs[0], target) + 1 / 3 * dice_ce_loss(outputs[1], target[..., ::2, ::2])
    torch.testing.assert_close(deep_supervision_loss(outputs, target, strides, weights), expected)
    torch.testing.assert_close(deep_supervision_loss(outputs[0], target, strides, weights),
                               dice_ce_loss(outputs[0], target))


def test_confusion_counts_and_pseudo_dice_by_hand():
    predicted = torch.tensor([[0, 1, 1], [2, 2, 0]])
    target = torch.tensor([[[[0, 1, 1], [0, 0, 1]]]])
    logits = 5.0 * functional.one_hot(predicted, 4).movedim(-1, 0)[None].float()  # 4 classes, class 3 nowhere
    tp, fp, fn = confusion_counts(logits, target)
    # class 1: predicted {(0,1), (0,2)}, true {(0,1), (0,2), (1,2)}; class 2: predicted twice, never true
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([2, 0, 0], [0, 2, 0], [1, 0, 0])
    dice = pseudo_dice(tp, fp, fn)
    assert dice[:2] == pytest.approx([0.8, 0.0]) and math.isnan(dice[2])
