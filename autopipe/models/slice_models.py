"""The models of the reconstruction + segmentation comparison, one spec each: which approach needs it, what it is
built from, what it sees and what it learns (the losses that follow from that: autopipe.train.slice_task).

Five ways to do both tasks (the MTLRS paper's four and the uncoupled ablation) need six trained models:

    cirim                       CIRIM alone: undersampled k-space -> image (reconstruction loss)
    segmentation_fully_sampled  2D Attention U-Net on |fully sampled image| (segmentation loss)
    segmentation_on_cirim       2D Attention U-Net on |image of the frozen, trained cirim|
    end_to_end                  CIRIM then the U-Net, one combined loss, no hidden-state coupling
    joint                       MTLRS cascades without the coupling (segmentation in every cascade)
    mtlrs                       MTLRS: segmentations fed into the next cascade's hidden states

Segmentation parts output one logit per class of plans.multitask.segmentation_classes (dataset.json's labels:
tissue and lesions where the cohort labels both).

Every reconstruction part has the size of plans.reconstruction and every segmentation part that of
plans.multitask, so the approaches differ only in how they are trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from autopipe.models.architectures import build, load_network
from autopipe.plan.configs import Plans

APPROACH_MODELS = {
    "pretrained": ("cirim", "segmentation_fully_sampled"),
    "sequential": ("cirim", "segmentation_on_cirim"),
    "end_to_end": ("end_to_end",),
    "joint": ("joint",),
    "mtlrs": ("mtlrs",),
}
"""The models each approach needs, in training order."""


@dataclass(frozen=True)
class SliceModel:
    """One model of the comparison. `sees`: "kspace" (undersampled k-space and coil maps), "fully_sampled" (the
    magnitude of the fully sampled image) or "cirim" (the magnitude of the frozen, trained cirim's image)."""

    architecture: str  # a key of autopipe.models.architectures.ARCHITECTURES
    reconstructs: bool  # has a CIRIM part, trained on the image (and warm-started from a trained cirim)
    segments: bool  # outputs class logits, so its slices need labels
    sees: str = "kspace"
    coupled: bool = False  # MTLRS: segmentations feed the next cascade's hidden states

    @property
    def warm_started(self) -> bool:
        """A multitask model whose CIRIM part can start from the trained cirim's weights."""
        return self.reconstructs and self.segments


SLICE_MODELS = {
    "cirim": SliceModel("CIRIM", reconstructs=True, segments=False),
    "segmentation_fully_sampled": SliceModel("AttentionUNet2d", reconstructs=False, segments=True,
                                             sees="fully_sampled"),
    "segmentation_on_cirim": SliceModel("AttentionUNet2d", reconstructs=False, segments=True, sees="cirim"),
    "end_to_end": SliceModel("ReconstructThenSegment", reconstructs=True, segments=True),
    "joint": SliceModel("MTLRS", reconstructs=True, segments=True),
    "mtlrs": SliceModel("MTLRS", reconstructs=True, segments=True, coupled=True),
}
COUPLING_INIT = 1.0
"""MTLRS' coupling gates start at 1 (published), warm start or not: 0 would start it as the uncoupled network,
which must then learn its own defining feature within the budget."""
MODEL_NAMES = tuple(SLICE_MODELS)
"""In training order: cirim before what builds on it."""


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
    if multitask.warm_start and any(SLICE_MODELS[m].warm_started for m in models):
        models = [m for m in MODEL_NAMES if m in {*models, "cirim"}]  # they start from it
    return models


def builds_on_cirim(name: str, plans: Plans) -> bool:
    """segmentation_on_cirim learns on the trained cirim's images; the multitask models start from its weights."""
    model = SLICE_MODELS[name]
    return model.sees == "cirim" or (model.warm_started and plans.multitask is not None and plans.multitask.warm_start)


def model_kwargs(name: str, plans: Plans) -> dict:
    """Constructor arguments of model `name` from the plan (stored in its checkpoints)."""
    r, m = plans.reconstruction, plans.multitask
    if r is None or (m is None and name != "cirim"):
        raise ValueError(f"the plan has no {'reconstruction' if r is None else 'multitask'} section for {name}")
    recon = {"cascades": r.cascades, "time_steps": r.time_steps, "hidden_channels": r.hidden_channels,
             "cell": r.recurrent_cell}
    model = SLICE_MODELS[name]
    if model.architecture == "CIRIM":
        return recon
    classes = len(m.segmentation_classes)
    seg = {"channels": m.segmentation_channels, "poolings": m.segmentation_poolings, "classes": classes}
    if model.architecture == "AttentionUNet2d":
        return seg
    if model.architecture == "ReconstructThenSegment":
        return {"reconstruction": recon, "segmentation": seg}
    coupling = list(m.lesion_classes) if m.coupling == "lesion" else list(range(1, classes))
    return {**recon, "segmentation_channels": m.segmentation_channels, "poolings": m.segmentation_poolings,
            "coupled": model.coupled, "coupling_init": COUPLING_INIT, "classes": classes,
            "coupling_classes": coupling}


def build_model(name: str, kwargs: dict) -> nn.Module:
    """The untrained network of model `name`."""
    if name not in SLICE_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return build(SLICE_MODELS[name].architecture, kwargs)


def warm_start(name: str, network: nn.Module, cirim_state: dict[str, torch.Tensor]) -> None:
    """Copy a trained CIRIM's weights into the reconstruction part of end_to_end, joint or mtlrs (same sizes:
    cascade c of the multitask network gets CIRIM's block c)."""
    if not SLICE_MODELS[name].warm_started:
        raise ValueError(f"{name} has no reconstruction part to warm-start")
    network.load_reconstruction(cirim_state)


def load_trained(path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """A trained slice model in eval mode, rebuilt from its checkpoint alone (not from the plan)."""
    return load_network(path, device)[0]
