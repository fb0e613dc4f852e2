"""2D Attention U-Net (Oktay et al. 2018), the segmentation network of MTLRS.

Level l (0 = full resolution) has channels * 2**l features and two (3x3 conv -> InstanceNorm -> LeakyReLU)
layers; max-pooling goes down, a 2x2 transposed conv goes up. Each skip connection passes through an additive
attention gate driven by the coarser decoder feature, so the decoder can suppress irrelevant regions of the skip.
Any H, W: the input is zero-padded to a multiple of 2**poolings and the logits cropped back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


def _conv_block(c_in: int, c_out: int, negative_slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(2):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1),
                   nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(negative_slope, inplace=True)]
    return nn.Sequential(*layers)


class AttentionGate(nn.Module):
    """alpha = sigmoid(psi(ReLU(theta(skip) + phi(gate)))) at the gate's (half) resolution, upsampled; skip * alpha.

    theta is a 2x2 stride-2 conv, so the skip meets the gating signal at the coarser resolution (Oktay et al.).
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.theta = nn.Conv2d(skip_channels, inter_channels, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(gate_channels, inter_channels, 1)
        self.psi = nn.Conv2d(inter_channels, 1, 1)

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients [B, 1, H, W] in (0, 1) at the skip's resolution."""
        alpha = torch.sigmoid(self.psi(torch.relu(self.theta(skip) + self.phi(gate))))
        return functional.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gate)


class AttentionUNet2d(nn.Module):
    """forward(x [B, in_channels, H, W]) -> logits [B, num_classes, H, W], for any H, W."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: int = 64, poolings: int = 2,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if poolings < 1 or channels < 1 or num_classes < 2:
            raise ValueError(f"poolings >= 1, channels >= 1 and num_classes >= 2 expected, got {poolings}, "
                             f"{channels}, {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.poolings = poolings
        f = [channels * 2**level for level in range(poolings + 1)]
        self.encoder = nn.ModuleList(
            _conv_block(in_channels if level == 0 else f[level - 1], f[level], negative_slope)
            for level in range(poolings + 1))
        # decoder modules are indexed by the level they produce: 0 .. poolings - 1
        self.gates = nn.ModuleList(AttentionGate(f[level], f[level + 1], max(f[level] // 2, 1))
                                   for level in range(poolings))
        self.upsamplers = nn.ModuleList(nn.ConvTranspose2d(f[level + 1], f[level], 2, stride=2)
                                        for level in range(poolings))
        self.decoder = nn.ModuleList(_conv_block(2 * f[level], f[level], negative_slope) for level in range(poolings))
        self.head = nn.Conv2d(f[0], num_classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, a=negative_slope)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input of shape {list(x.shape)}: [B, {self.in_channels}, H, W] expected")
        H, W = x.shape[-2:]
        multiple = 2**self.poolings
        pad_h, pad_w = -H % multiple, -W % multiple
        x = functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(self.poolings)):
            skip = self.gates[level](skips[level], x)
            x = self.decoder[level](torch.cat([skip, self.upsamplers[level](x)], dim=1))
        logits = self.head(x)
        return logits[..., pad_h // 2:pad_h // 2 + H, pad_w // 2:pad_w // 2 + W]
