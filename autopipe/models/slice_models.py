"""The networks of the reconstruction + segmentation comparison: which models each approach needs, and how
each is built and warm-started (what each learns from a slice: autopipe.train.slice_models).

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

from pathlib import Path

import torch
from torch import nn

from autopipe.models.architectures import SLICE_MODEL_ARCHITECTURES, build, load_network
from autopipe.plan.configs import Plans

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


def planned_models(plans: Plans) -> list[str]:
    """The slice models the plan asks for: those of its approaches, or cirim alone without lesion labels."""
    if plans.reconstruction is None:
        return []
    multitask = plans.multitask
    if multitask is None:
        return ["cirim"]
    models = models_for(multitask.approaches)
    if multitask.warm_start and set(models) & set(WARM_STARTED):
        models = [m for m in MODEL_NAMES if m in {*models, "cirim"}]  # they start from it
    return models


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
    """The untrained network of model `name` (its architecture: SLICE_MODEL_ARCHITECTURES)."""
    if name not in SLICE_MODEL_ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return build(SLICE_MODEL_ARCHITECTURES[name], kwargs)


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
    return load_network(path, device)[0]
