"""The joint model's loss: L_joint = L_seg + r L_cls, L_cls a class-balanced binary cross-entropy.

Pure functions over tensors. logits and labels are [B]: one hand-function logit and one label (1 = impaired)
per sample, the label being that of the subject the sample was cut from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional


def pos_weight_for(labels: Sequence[int]) -> float:
    """negatives / positives of the training cases: the positive term's weight that balances the two classes."""
    positives = sum(1 for label in labels if label == 1)
    negatives = sum(1 for label in labels if label == 0)
    if positives + negatives != len(labels):
        raise ValueError(f"labels must be 0 or 1, got {sorted(set(labels) - {0, 1})}")
    if positives == 0 or negatives == 0:
        raise ValueError(f"both classes needed to balance them: {negatives} negative(s), {positives} positive(s)")
    return negatives / positives


def hand_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """mean_i -[w y_i log s(x_i) + (1 - y_i) log(1 - s(x_i))], s the sigmoid, w = pos_weight; float32."""
    if logits.ndim != 1 or logits.shape != labels.shape:
        raise ValueError(f"logits {list(logits.shape)} and labels {list(labels.shape)}: two [B] tensors expected")
    return functional.binary_cross_entropy_with_logits(
        logits.float(), labels.float(), pos_weight=torch.tensor(float(pos_weight), device=logits.device))


def joint_loss(seg_loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, r: float,
               pos_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(seg_loss + r hand_loss, hand_loss): what is minimised, and its hand-function term for the curves."""
    if r <= 0:
        raise ValueError(f"r must be > 0 (r = 0 is the plain U-Net), got {r}")
    cls = hand_loss(logits, labels, pos_weight)
    return seg_loss + r * cls, cls
