"""nnU-Net's segmentation loss: soft Dice over the foreground classes plus cross-entropy, deep-supervised.

Pure functions over tensors. Shapes: logits [B, K, *spatial] (K classes, 0 = background),
target [B, 1, *spatial] holding integer class indices (any dtype), *spatial of 2 or 3 axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    """ValueError unless logits [B, K >= 2, *spatial] and target [B, 1, *spatial] agree."""
    if logits.ndim < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits of shape {list(logits.shape)}: [B, K >= 2, *spatial] expected (background + lesion)")
    expected = [logits.shape[0], 1, *logits.shape[2:]]
    if list(target.shape) != expected:
        raise ValueError(f"target of shape {list(target.shape)}: {expected} expected for logits {list(logits.shape)}")


def _one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, 1, *spatial] class indices -> [B, K, *spatial] float one-hot."""
    return functional.one_hot(target[:, 0].long(), num_classes).movedim(-1, 1).float()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool = True,
                   smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes 1..K-1 (background excluded); a scalar in [0, 1].

    Per class, dice = (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth) with p = softmax(logits) and
    t the one-hot target. batch_dice: sums run over batch and space (nnU-Net's 3d_fullres default,
    stable with small lesions and empty patches); else per sample, then the dice is averaged over
    samples and classes. nnU-Net returns -dice (in [-1, 0]); 1 - dice is used here so that the total
    loss stays >= 0; the gradient is the same.
    """
    _check_pair(logits, target)
    probs = logits.float().softmax(1)[:, 1:]  # float32: fp16 sums over a 3D batch overflow
    onehot = _one_hot(target, logits.shape[1])[:, 1:]
    axes = [0, *range(2, logits.ndim)] if batch_dice else list(range(2, logits.ndim))
    intersection = (probs * onehot).sum(axes)
    dice = (2 * intersection + smooth) / (probs.sum(axes) + onehot.sum(axes) + smooth)
    return 1 - dice.mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool = True) -> torch.Tensor:
    """L = L_Dice + L_CE, equal weights; cross-entropy averaged over all voxels. A scalar >= 0."""
    _check_pair(logits, target)
    return soft_dice_loss(logits, target, batch_dice) + functional.cross_entropy(logits, target[:, 0].long())


def deep_supervision_weights(n_outputs: int) -> tuple[float, ...]:
    """1/2^i for output i (full resolution first), the lowest resolution set to 0, normalized to sum 1.

    n = 1 -> (1.0,); n = 3 -> (1, 0.5, 0) / 1.5 = (2/3, 1/3, 0).
    """
    if n_outputs < 1:
        raise ValueError(f"at least one output expected, got n_outputs = {n_outputs}")
    if n_outputs == 1:
        return (1.0,)
    weights = [0.5**i for i in range(n_outputs - 1)] + [0.0]
    total = sum(weights)
    return tuple(w / total for w in weights)


def downsample_target(target: torch.Tensor, factor: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of [B, 1, *spatial] by an integer `factor` per axis: target[..., ::f0, ::f1].

    Every spatial size must be a multiple of its factor (the network's input check guarantees it);
    then this equals torch.nn.functional.interpolate(mode="nearest") to the output's shape, and keeps labels integral.
    """
    spatial = tuple(target.shape[2:])
    if len(factor) != len(spatial) or any(size % f for size, f in zip(spatial, factor, strict=False)):
        raise ValueError(f"target spatial shape {list(spatial)} cannot be downsampled by {list(factor)}: "
                         f"one factor per axis, each dividing its size, expected")
    return target[(slice(None), slice(None), *(slice(None, None, f) for f in factor))]


def deep_supervision_loss(outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor,
                          strides_per_output: Sequence[Sequence[int]], weights: Sequence[float]) -> torch.Tensor:
    """sum_i w_i dice_ce_loss(outputs[i], target downsampled by strides_per_output[i]); zero weights skipped.

    outputs: logits, full resolution first, as PlainConvUNet returns them with deep supervision
    (`strides_per_output` = network.output_strides(strides), `weights` = deep_supervision_weights(n)).
    A single tensor (deep supervision off) gives the plain dice_ce_loss.
    """
    if isinstance(outputs, torch.Tensor):
        return dice_ce_loss(outputs, target)
    if not len(outputs) == len(strides_per_output) == len(weights):
        raise ValueError(f"one stride and one weight per output expected: {len(outputs)} outputs, "
                         f"{len(strides_per_output)} strides, {len(weights)} weights")
    terms = [w * dice_ce_loss(out, downsample_target(target, stride))
             for out, stride, w in zip(outputs, strides_per_output, weights, strict=True) if w != 0]
    return torch.stack(terms).sum()


@torch.no_grad()
def confusion_counts(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives, false negatives of the argmax prediction per foreground class.

    Returns three int64 tensors [K - 1] (classes 1..K-1), summed over batch and space, on the logits'
    device; the trainer sums them over ranks and batches before computing `pseudo_dice`.
    """
    _check_pair(logits, target)
    num_classes = logits.shape[1]
    pred = functional.one_hot(logits.argmax(1), num_classes).movedim(-1, 1)[:, 1:].bool()
    truth = functional.one_hot(target[:, 0].long(), num_classes).movedim(-1, 1)[:, 1:].bool()
    axes = [0, *range(2, logits.ndim)]
    return (pred & truth).sum(axes), (pred & ~truth).sum(axes), (~pred & truth).sum(axes)


def pseudo_dice(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> list[float]:
    """2 tp / (2 tp + fp + fn) per class; nan for a class neither predicted nor present."""
    return [2 * t / (2 * t + p + n) if 2 * t + p + n > 0 else float("nan")
            for t, p, n in zip(tp.tolist(), fp.tolist(), fn.tolist(), strict=True)]
