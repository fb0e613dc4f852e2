"""What each model of the reconstruction + segmentation comparison learns from one k-space slice: its input,
its loss (autopipe.train.recon_loss) and its output. The networks themselves: autopipe.models.slice_models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from autopipe.models.mtlrs import MultitaskOutput
from autopipe.models.slice_models import SEGMENTATION_ONLY
from autopipe.train.recon_loss import multitask_loss, reconstruction_loss, segmentation_loss


def needs_segmentation(name: str) -> bool:
    return name != "cirim"


def segmentation_input(name: str, batch: dict[str, torch.Tensor],
                       reconstruct: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None) -> torch.Tensor:
    """[B, 1, H, W] magnitude a segmentation-only model sees: the fully sampled image, or the frozen
    reconstruction's (`reconstruct` maps a batch to its complex image)."""
    if name == "segmentation_fully_sampled":
        return batch["target"].abs()[:, None]
    if reconstruct is None:
        raise ValueError(f"{name} needs the trained reconstruction network")
    return reconstruct(batch).abs()[:, None]


def slice_loss(name: str, network: nn.Module, batch: dict[str, torch.Tensor], weights: tuple[float, float],
               reconstruct: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, float], MultitaskOutput | torch.Tensor]:
    """Loss of one batch for model `name`: (loss, its float parts, the network's output).

    weights = (segmentation, reconstruction) for the combined loss of end_to_end, joint and mtlrs.
    """
    if name == "cirim":
        estimates = network(batch["kspace"], batch["maps"], batch["mask"])
        loss = reconstruction_loss(estimates, batch["target"])
        return loss, {"reconstruction": loss.item(), "total": loss.item()}, MultitaskOutput(estimates, [])
    if name in SEGMENTATION_ONLY:
        logits = network(segmentation_input(name, batch, reconstruct))
        loss = segmentation_loss(logits, batch["segmentation"])
        return loss, {"segmentation": loss.item(), "total": loss.item()}, logits
    output = network(batch["kspace"], batch["maps"], batch["mask"])
    loss, parts = multitask_loss(output, batch["target"], batch["segmentation"], segmentation_weight=weights[0],
                                 reconstruction_weight=weights[1])
    return loss, parts, output
