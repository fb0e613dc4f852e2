"""Multitask reconstruction + segmentation: MTLRS (Karkalousos et al., MIDL 2023) and reconstruct-then-segment.

MTLRS: each cascade is a RIM block followed by an Attention U-Net on the magnitude of the cascade's last
image. Coupled (MTLRS proper): after every cascade but the last, |x| * p_k for every coupled class k (the
softmax probabilities; by default every foreground class, as the public code tiles every segmentation class)
is tiled over the hidden channels (channel j gets class j mod K) and added to both recurrent hidden states
carried into the next cascade, so the segmentation steers the reconstruction; gradients flow through it.
Uncoupled: the same network without the addition (the "joint" baseline). The addition is scaled by a learned
gate per hidden channel, 1 at the start (published); a warm start from a trained CIRIM keeps it at 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autopipe.models.attention_unet import AttentionUNet2d
from autopipe.models.cirim import CIRIM, final_image
from autopipe.models.rim import RIMBlock
from autopipe.mri import operators


@dataclass
class MultitaskOutput:
    """estimates[cascade][step]: [B, H, W] complex images; segmentations: one logits [B, K, H, W] per cascade."""

    estimates: list[list[torch.Tensor]]
    segmentations: list[torch.Tensor]

    @property
    def image(self) -> torch.Tensor:
        """The final reconstruction: last time step of the last cascade, [B, H, W] complex."""
        return final_image(self.estimates)

    @property
    def segmentation(self) -> torch.Tensor:
        """The final segmentation logits [B, K, H, W]."""
        return self.segmentations[-1]


def _magnitude(image: torch.Tensor) -> torch.Tensor:
    """[B, H, W] complex -> [B, 1, H, W] magnitude."""
    return image.abs()[:, None]


class MTLRS(nn.Module):
    """`cascades` x (RIMBlock -> AttentionUNet2d), each with its own parameters; forward -> MultitaskOutput.

    `classes`: segmentation classes, background first; `coupling_classes`: the class indices whose
    probabilities feed the hidden states (default: every foreground class)."""

    def __init__(self, cascades: int, time_steps: int, hidden_channels: int, segmentation_channels: int,
                 poolings: int = 2, coupled: bool = True, cell: str = "IndRNN", coupling_init: float = 1.0,
                 classes: int = 2, coupling_classes: tuple[int, ...] | list[int] | None = None) -> None:
        super().__init__()
        if cascades < 1:
            raise ValueError(f"cascades must be >= 1, got {cascades}")
        coupling_classes = tuple(range(1, classes)) if coupling_classes is None else tuple(coupling_classes)
        if not coupling_classes or not all(0 < k < classes for k in coupling_classes):
            raise ValueError(f"coupling_classes must be foreground classes 1..{classes - 1}, got {coupling_classes}")
        self.coupled = coupled
        # hidden channel j carries class coupling_classes[j mod K]
        self.register_buffer("coupling_index", torch.tensor(coupling_classes)[torch.arange(hidden_channels)
                                                                               % len(coupling_classes)],
                             persistent=False)
        # learned per-channel strength of the coupling into each hidden state after each cascade but the last:
        # 1 adds |x| * p_lesion as published (0 would start as the uncoupled network); learned from there
        self.coupling_gates = nn.Parameter(torch.full((max(cascades - 1, 0), 2, hidden_channels, 1, 1),
                                                      float(coupling_init)), requires_grad=coupled)
        self.reconstructors = nn.ModuleList(RIMBlock(hidden_channels, time_steps, cell) for _ in range(cascades))
        self.segmenters = nn.ModuleList(AttentionUNet2d(1, classes, segmentation_channels, poolings)
                                        for _ in range(cascades))

    def forward(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None) -> MultitaskOutput:
        image = operators.adjoint(kspace, maps, mask)
        hidden = None
        estimates, segmentations = [], []
        last = len(self.reconstructors) - 1
        for c, (rim, segmenter) in enumerate(zip(self.reconstructors, self.segmenters, strict=True)):
            steps, hidden = rim(image, kspace, maps, mask, hidden)
            image = steps[-1]
            magnitude = _magnitude(image)
            logits = segmenter(magnitude)
            estimates.append(steps)
            segmentations.append(logits)
            if self.coupled and c < last:
                # softmax probabilities (not a min-max normalization), tiled over the hidden channels
                coupling = magnitude * logits.softmax(1)[:, self.coupling_index]
                hidden = [h + gate * coupling for h, gate in zip(hidden, self.coupling_gates[c], strict=True)]
        return MultitaskOutput(estimates, segmentations)

    def load_reconstruction(self, cirim_state: dict[str, torch.Tensor]) -> None:
        """Start from a trained CIRIM of the same size: cascade c gets its block c."""
        for c, block in enumerate(self.reconstructors):
            prefix = f"blocks.{c}."
            block.load_state_dict({k[len(prefix):]: v for k, v in cirim_state.items() if k.startswith(prefix)})


class ReconstructThenSegment(nn.Module):
    """CIRIM, then a segmentation net on |final image|: end-to-end training or chaining separately trained nets."""

    def __init__(self, reconstruction: CIRIM, segmentation: AttentionUNet2d) -> None:
        super().__init__()
        self.reconstruction = reconstruction
        self.segmentation = segmentation

    def forward(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None) -> MultitaskOutput:
        estimates = self.reconstruction(kspace, maps, mask)
        return MultitaskOutput(estimates, [self.segmentation(_magnitude(final_image(estimates)))])

    def load_reconstruction(self, cirim_state: dict[str, torch.Tensor]) -> None:
        """Start from a trained CIRIM of the same size."""
        self.reconstruction.load_state_dict(cirim_state)
