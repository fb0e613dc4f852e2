"""Losses for reconstruction and multitask training: L1 over intermediate images, CE + Dice, their weighted sum.

Pure functions over tensors. Later estimates weigh more (time_step_weights), so early steps are guided without
dominating; each weight is applied exactly once and cross-entropy is computed on the live logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional

from autopipe.train.loss import soft_dice_loss

if TYPE_CHECKING:
    from autopipe.models.mtlrs import MultitaskOutput


def time_step_weights(n: int) -> torch.Tensor:
    """n strictly increasing weights summing to 1: logspace(-1, 0, n) normalized (n = 1 -> [1.0])."""
    if n < 1:
        raise ValueError(f"at least one estimate expected, got n = {n}")
    weights = torch.logspace(-1, 0, n, dtype=torch.float64)
    return (weights / weights.sum()).float()


def reconstruction_loss(estimates: list[list[torch.Tensor]], target: torch.Tensor) -> torch.Tensor:
    """sum_t w_t mean| |x_t| - |target| | over all cascades' time steps in order (w = time_step_weights).

    estimates[cascade][step]: [B, H, W] complex (or real); target [B, H, W] complex or magnitude.
    """
    sequence = [x for steps in estimates for x in steps]
    if not sequence:
        raise ValueError("no estimates to compare with the target")
    magnitude = target.abs()
    weights = time_step_weights(len(sequence)).to(magnitude.device)
    terms = torch.stack([functional.l1_loss(x.abs(), magnitude) for x in sequence])
    return (weights * terms).sum()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 cross-entropy + 0.5 soft Dice (foreground classes); logits [B, K, H, W], target [B, 1, H, W] classes."""
    cross_entropy = functional.cross_entropy(logits, target[:, 0].long())
    return 0.5 * cross_entropy + 0.5 * soft_dice_loss(logits, target)


def multitask_loss(output: MultitaskOutput, target_image: torch.Tensor, target_segmentation: torch.Tensor,
                   segmentation_weight: float = 0.9, reconstruction_weight: float = 0.1,
                   supervision: str = "final_cascade") -> tuple[torch.Tensor, dict[str, float]]:
    """segmentation_weight * L_seg + reconstruction_weight * reconstruction_loss.

    L_seg = segmentation_loss of the last cascade's segmentation ("final_cascade", the public code) or
    sum_k w_k segmentation_loss(seg_k) with w_k = time_step_weights over the cascades ("every_cascade").
    Returns the total and the floats
    {"reconstruction": unweighted L1 term, "segmentation": unweighted CE + Dice term, "total": weighted sum}.
    """
    if not output.segmentations:
        raise ValueError("the output holds no segmentation")
    if supervision == "final_cascade":  # the earlier logits enter with weight 0: every parameter gets a gradient,
        # as DistributedDataParallel requires, where an uncoupled network's earlier segmenters feed nothing else
        seg = segmentation_loss(output.segmentations[-1], target_segmentation) \
            + sum(0.0 * s.mean() for s in output.segmentations[:-1])
    elif supervision == "every_cascade":
        weights = time_step_weights(len(output.segmentations)).to(target_image.device)
        seg = (weights * torch.stack([segmentation_loss(s, target_segmentation)
                                      for s in output.segmentations])).sum()
    else:
        raise ValueError(f"supervision must be final_cascade or every_cascade, got {supervision!r}")
    rec = reconstruction_loss(output.estimates, target_image)
    total = segmentation_weight * seg + reconstruction_weight * rec
    return total, {"reconstruction": rec.item(), "segmentation": seg.item(), "total": total.item()}
