"""The joint model: the plain U-Net with a hand-function classifier on its bottleneck.

One encoder serves both tasks, so L_joint = L_seg + r L_cls shapes the features the segmentation uses too.
forward() is PlainConvUNet's, so sliding-window inference, validation and checkpoints of the segmentation part
work unchanged; the hand-function logit comes from forward_joint() (or forward(x, joint=True), the form
DistributedDataParallel can wrap) and, without the decoder, from hand_logits().
"""

from __future__ import annotations

import torch
from torch import nn

from autopipe.models.unet import PlainConvUNet
from autopipe.plan.configs import SegmentationConfig


class HandHead(nn.Module):
    """Bottleneck features [B, F, *spatial] -> one logit per sample [B] (1 = impaired hand function).

    Global average pooling says how much of a pattern the brain holds, global max pooling whether it occurs
    at all (a small lesion in the motor tract); both are concatenated and fed to one linear layer.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * features, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        flat = features.flatten(2)
        return self.linear(torch.cat([flat.mean(2), flat.amax(2)], dim=1))[:, 0]


class JointUNet(PlainConvUNet):
    """PlainConvUNet (same constructor and forward) plus `hand_head` on the deepest encoder stage."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hand_head = HandHead(self.features_per_stage[-1])  # built last: the U-Net's init is PlainConvUNet's

    def forward(self, x: torch.Tensor, joint: bool = False):
        """PlainConvUNet's outputs; with `joint`, forward_joint's (outputs, hand logits)."""
        return self.forward_joint(x) if joint else super().forward(x)

    def forward_joint(self, x: torch.Tensor) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """(forward's segmentation outputs, hand-function logits [B]) from one pass through the encoder."""
        self._check_input(x)
        skips = self._encode(x)
        return self._decode(skips), self.hand_head(skips[-1])

    def hand_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Hand-function logits [B] alone: the encoder and the head, no decoder (inference)."""
        self._check_input(x)
        return self.hand_head(self._encode(x)[-1])


def build_joint_network(config: SegmentationConfig, in_channels: int, num_classes: int) -> JointUNet:
    """The joint model on the U-Net a plan's configuration describes (network.build_network's arguments)."""
    if config.network != "PlainConvUNet":
        raise ValueError(f"network {config.network!r} in the plan: the joint model extends PlainConvUNet only")
    return JointUNet(in_channels, num_classes, config.features_per_stage, config.kernel_sizes, config.strides,
                     config.n_conv_per_stage, config.deep_supervision)
