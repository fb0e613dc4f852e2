"""Cascades of recurrent inference machines (CIRIM): reconstruction alone.

Cascade 1 starts from the zero-filled SENSE image A^H y; each next cascade starts from the previous cascade's
last estimate, with the recurrent hidden states carried over. Every cascade has its own parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from autopipe.models.rim import RIMBlock
from autopipe.mri import operators


def final_image(estimates: list[list[torch.Tensor]]) -> torch.Tensor:
    """The reconstruction: the last time step of the last cascade, [B, H, W] complex."""
    return estimates[-1][-1]


class CIRIM(nn.Module):
    """`cascades` RIM blocks of `time_steps` steps each; forward(kspace, maps, mask) -> estimates[cascade][step]."""

    def __init__(self, cascades: int, time_steps: int, hidden_channels: int, cell: str = "IndRNN") -> None:
        super().__init__()
        if cascades < 1:
            raise ValueError(f"cascades must be >= 1, got {cascades}")
        self.blocks = nn.ModuleList(RIMBlock(hidden_channels, time_steps, cell) for _ in range(cascades))

    def forward(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor | None
                ) -> list[list[torch.Tensor]]:
        image = operators.adjoint(kspace, maps, mask)
        hidden = None
        estimates = []
        for block in self.blocks:
            steps, hidden = block(image, kspace, maps, mask, hidden)
            estimates.append(steps)
            image = steps[-1]
        return estimates
