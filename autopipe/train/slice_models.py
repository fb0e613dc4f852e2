"""The networks the reconstruction + segmentation comparison trains, and what each one learns from a slice.

Five ways to do both tasks (the MTLRS paper's four and the uncoupled ablation) need six trained models:

    cirim                       CIRIM alone: undersampled k-space -> image (reconstruction loss)
    segmentation_fully_sampled  2D Attention U-Net on |fully sampled image| (segmentation loss)
    segmentation_on_cirim       2D Attention U-Net on |image of the frozen, trained cirim|
    end_to_end                  CIRIM then the U-Net, one combined loss, no hidden-state coupling
    joint                       MTLRS cascades without the coupling (segmentation in every cascade)
    mtlrs                       MTLRS: segmentations fed into the next cascade's hidden states

Every reconstruction part has the size of plans.reconstruction and every segmentation part that of
plans.multitask, so the approaches differ only in how they are trained.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from autopipe.plan.configs import Plans
from autopipe.train.attention_unet import AttentionUNet2d
from autopipe.train.checkpoint import load_checkpoint
from autopipe.train.cirim import CIRIM
from autopipe.train.mtlrs import MTLRS, MultitaskOutput, ReconstructThenSegment
from autopipe.train.recon_loss import multitask_loss, reconstruction_loss, segmentation_loss

APPROACH_MODELS = {
    "pretrained": ("cirim", "segmentation_fully_sampled"),
    "sequential": ("cirim", "segmentation_on_cirim"),
    "end_to_end": ("end_to_end",),
    "joint": ("joint",),
    "mtlrs": ("mtlrs",),
}
"""The models each approach needs, in training order."""
MODEL_NAMES = ("cirim", "segmentation_fully_sampled", "segmentation_on_cirim", "end_to_end", "joint", "mtlrs")
SEGMENTATION_ONLY = ("segmentation_fully_sampled", "segmentation_on_cirim")


def models_for(approaches: tuple[str, ...] | list[str]) -> list[str]:
    """The models the approaches need, each once, in MODEL_NAMES order (cirim before what builds on it)."""
    wanted = {m for a in approaches for m in APPROACH_MODELS[a]}
    return [m for m in MODEL_NAMES if m in wanted]


def model_kwargs(name: str, plans: Plans) -> dict:
    """Constructor arguments of model `name` from the plan (stored in its checkpoints)."""
    r, m = plans.reconstruction, plans.multitask
    if r is None or (m is None and name != "cirim"):
        raise ValueError(f"the plan has no {'reconstruction' if r is None else 'multitask'} section for {name}")
    recon = {"cascades": r.cascades, "time_steps": r.time_steps, "hidden_channels": r.hidden_channels,
             "cell": r.recurrent_cell}
    if name == "cirim":
        return recon
    seg = {"channels": m.segmentation_channels, "poolings": m.segmentation_poolings}
    if name in SEGMENTATION_ONLY:
        return seg
    if name == "end_to_end":
        return {"reconstruction": recon, "segmentation": seg}
    return {**recon, "segmentation_channels": m.segmentation_channels, "poolings": m.segmentation_poolings,
            "coupled": name == "mtlrs", "coupling_init": 0.0 if m.warm_start else 1.0}


def build_model(name: str, kwargs: dict) -> nn.Module:
    """The untrained network of model `name`."""
    if name == "cirim":
        return CIRIM(**kwargs)
    if name in SEGMENTATION_ONLY:
        return AttentionUNet2d(in_channels=1, num_classes=2, **kwargs)
    if name == "end_to_end":
        return ReconstructThenSegment(CIRIM(**kwargs["reconstruction"]),
                                      AttentionUNet2d(in_channels=1, num_classes=2, **kwargs["segmentation"]))
    if name in ("joint", "mtlrs"):
        return MTLRS(**kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def warm_start(name: str, network: nn.Module, cirim_state: dict[str, torch.Tensor]) -> None:
    """Copy a trained CIRIM's weights into the reconstruction part of end_to_end, joint or mtlrs (same sizes:
    cascade c of the multitask network gets CIRIM's block c)."""
    if name == "end_to_end":
        network.reconstruction.load_state_dict(cirim_state)
    elif name in ("joint", "mtlrs"):
        for c, block in enumerate(network.reconstructors):
            prefix = f"blocks.{c}."
            block.load_state_dict({k[len(prefix):]: v for k, v in cirim_state.items() if k.startswith(prefix)})
    else:
        raise ValueError(f"{name} has no reconstruction part to warm-start")


WARM_STARTED = ("end_to_end", "joint", "mtlrs")


def load_trained(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """A trained slice model in eval mode, rebuilt from its checkpoint alone (not from the plan)."""
    state = load_checkpoint(path, map_location=device)
    network = build_model(state["model"], state["network_kwargs"]).to(device).eval()
    network.load_state_dict(state["network"])
    return network


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
