"""nnU-Net's plain convolutional U-Net, built from a plan's segmentation configuration.

Encoder stage s: `n_conv_per_stage` x (conv -> InstanceNorm -> LeakyReLU), the first conv strided by
`strides[s]` (all ones at stage 0). Decoder stage s (from the bottleneck up): transposed conv
(kernel = stride = `strides[s + 1]`) to `features[s]`, concatenation with encoder stage s's output,
`n_conv_per_stage` convs, and a 1x1 head to class logits. 2D or 3D follows len(kernel_sizes[0]).
The same topology, seen without torch by the planner, is `autopipe.plan.topology`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from autopipe.plan.configs import SegmentationConfig
from autopipe.plan.topology import feature_map_size

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
TRANSPOSED_CONV = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
NEGATIVE_SLOPE = 0.01
NORM_EPS = 1e-5


def output_strides(strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Cumulative downsampling of each deep-supervision output, full resolution first (n_stages - 1 entries).

    ((1,1,1), (2,2,2), (2,2,2)) -> [(1,1,1), (2,2,2)]: decoder stage s sits at the resolution of encoder stage s.
    """
    factors, factor = [], (1,) * len(strides[0])
    for stride in strides[:-1]:
        factor = tuple(f * s for f, s in zip(factor, stride, strict=True))
        factors.append(factor)
    return factors


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv_stage(dim: int, c_in: int, c_out: int, kernel: Sequence[int], stride: Sequence[int],
                n_conv: int) -> nn.Sequential:
    """`n_conv` x (conv -> norm -> nonlinearity); only the first conv is strided; 'same' padding k // 2."""
    layers: list[nn.Module] = []
    for i in range(n_conv):
        layers += [
            CONV[dim](c_in if i == 0 else c_out, c_out, tuple(kernel), stride=tuple(stride) if i == 0 else 1,
                      padding=tuple(k // 2 for k in kernel), bias=True),
            INSTANCE_NORM[dim](c_out, eps=NORM_EPS, affine=True),
            nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
        ]
    return nn.Sequential(*layers)


def _check_topology(features: Sequence[int], kernel_sizes: Sequence[Sequence[int]],
                    strides: Sequence[Sequence[int]]) -> int:
    """The spatial dimension (2 or 3) after checking the per-stage lists agree; ValueError naming the mismatch."""
    n_stages = len(features)
    if n_stages < 2:
        raise ValueError(f"a U-Net needs at least 2 stages (an encoder stage and a bottleneck), got {n_stages}")
    if len(kernel_sizes) != n_stages or len(strides) != n_stages:
        raise ValueError(f"one kernel size and one stride per stage expected ({n_stages} features_per_stage), "
                         f"got {len(kernel_sizes)} kernel_sizes and {len(strides)} strides")
    dim = len(kernel_sizes[0])
    if dim not in CONV:
        raise ValueError(f"2D or 3D kernels expected, got kernel_sizes[0] = {list(kernel_sizes[0])}")
    for name, entries in (("kernel_sizes", kernel_sizes), ("strides", strides)):
        for s, entry in enumerate(entries):
            if len(entry) != dim:
                raise ValueError(f"{name}[{s}] = {list(entry)}: {dim} values expected, as kernel_sizes[0]")
    return dim


class PlainConvUNet(nn.Module):
    """U-Net with strided-conv downsampling, transposed-conv upsampling and optional deep supervision.

    forward(x [B, in_channels, *spatial]) -> logits [B, num_classes, *spatial] when `deep_supervision`
    is False, else a list of n_stages - 1 logit tensors, full resolution first, output i at
    spatial / output_strides(strides)[i]. `deep_supervision` may be switched off after construction
    (inference); every head exists either way, so checkpoints load in both modes.
    """

    def __init__(self, in_channels: int, num_classes: int, features_per_stage: Sequence[int],
                 kernel_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]], n_conv_per_stage: int = 2,
                 deep_supervision: bool = True) -> None:
        super().__init__()
        self.dim = _check_topology(features_per_stage, kernel_sizes, strides)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features_per_stage = tuple(features_per_stage)
        self.kernel_sizes = tuple(tuple(k) for k in kernel_sizes)
        self.strides = tuple(tuple(s) for s in strides)
        self.n_conv_per_stage = n_conv_per_stage
        self.deep_supervision = deep_supervision
        self.divisible_by = tuple(math.prod(s[axis] for s in self.strides) for axis in range(self.dim))

        f, k, n = self.features_per_stage, self.kernel_sizes, len(self.features_per_stage)
        self.encoder = nn.ModuleList(
            _conv_stage(self.dim, in_channels if s == 0 else f[s - 1], f[s], k[s], self.strides[s], n_conv_per_stage)
            for s in range(n))
        # decoder modules are indexed by the encoder stage whose resolution they produce: 0 .. n - 2
        self.upsamplers = nn.ModuleList(
            TRANSPOSED_CONV[self.dim](f[s + 1], f[s], self.strides[s + 1], stride=self.strides[s + 1], bias=True)
            for s in range(n - 1))
        self.decoder = nn.ModuleList(
            _conv_stage(self.dim, 2 * f[s], f[s], k[s], (1,) * self.dim, n_conv_per_stage) for s in range(n - 1))
        self.heads = nn.ModuleList(CONV[self.dim](f[s], num_classes, 1, bias=True) for s in range(n - 1))
        self.apply(_init_weights)

    def _check_input(self, x: torch.Tensor) -> None:
        expected = f"[B, {self.in_channels}, {', '.join(['*'] * self.dim)}]"
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"input of shape {list(x.shape)}: {expected} expected")
        spatial = tuple(x.shape[2:])
        if any(size % d for size, d in zip(spatial, self.divisible_by, strict=True)):
            raise ValueError(f"input spatial shape {list(spatial)} is not divisible by {list(self.divisible_by)}, "
                             f"the product of the strides per axis; pad the input (inference pads to the patch size)")

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._check_input(x)
        return self._decode(self._encode(x))

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every encoder stage, the bottleneck last."""
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips

    def _decode(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """forward's logits from the encoder outputs (the bottleneck, skips[-1], has no skip connection)."""
        x = skips[-1]
        outputs = []
        for s in reversed(range(len(self.decoder))):
            x = self.decoder[s](torch.cat([self.upsamplers[s](x), skips[s]], dim=1))
            if self.deep_supervision or s == 0:
                outputs.append(self.heads[s](x))
        return outputs[::-1] if self.deep_supervision else outputs[0]

    def feature_map_size(self, patch_size: Sequence[int]) -> int:
        """The planner's memory proxy for one sample of `patch_size`: channels x voxels summed over conv outputs."""
        return feature_map_size(tuple(patch_size), self.strides, self.features_per_stage, self.num_classes,
                                self.n_conv_per_stage)


def _init_weights(module: nn.Module) -> None:
    """nnU-Net's init: He normal (a = 0.01, the LeakyReLU slope) for convs and transposed convs, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


ARCHITECTURES = {"PlainConvUNet": PlainConvUNet}  # keys mirror autopipe.plan.configs.NETWORKS


def build_network(config: SegmentationConfig, in_channels: int, num_classes: int) -> PlainConvUNet:
    """The U-Net a plan's configuration describes; `config.network` names it in ARCHITECTURES."""
    if config.network not in ARCHITECTURES:
        raise ValueError(f"network {config.network!r} in the plan: one of {sorted(ARCHITECTURES)} expected")
    return ARCHITECTURES[config.network](in_channels, num_classes, config.features_per_stage, config.kernel_sizes,
                                         config.strides, config.n_conv_per_stage, config.deep_supervision)
