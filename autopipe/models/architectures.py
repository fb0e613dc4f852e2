"""Every network autopipe trains, by the name its checkpoints record, so any model is rebuilt from its
checkpoint alone (never from a plan that may have changed since).

    architecture            network                                   network_kwargs in the checkpoint
    PlainConvUNet           nnU-Net's plain U-Net (models.unet)       in_channels, num_classes, features_per_stage,
                                                                      kernel_sizes, strides, n_conv_per_stage,
                                                                      deep_supervision
    JointUNet               the same with a whole-brain lesion-map    the same, plus hand_head (the head's grid:
                            hand-function head (models.joint_unet)    fine_shape, factor, cells, voxel_ml),
                                                                      patch_size, transpose_forward
    CIRIM                   models.cirim                              cascades, time_steps, hidden_channels, cell
    AttentionUNet2d         models.attention_unet (1 magnitude        channels, poolings, classes (default 2:
                            channel in, one logit per class out)      background and lesion)
    ReconstructThenSegment  CIRIM, then the AttentionUNet2d           reconstruction, segmentation (their kwargs)
    MTLRS                   models.mtlrs (coupled or not)             CIRIM's, segmentation_channels, poolings,
                                                                      coupled, coupling_init, classes,
                                                                      coupling_classes
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from autopipe.errors import AutopipeError
from autopipe.models.attention_unet import AttentionUNet2d
from autopipe.models.checkpoint import load_checkpoint
from autopipe.models.cirim import CIRIM
from autopipe.models.joint_unet import JointUNet
from autopipe.models.mtlrs import MTLRS, ReconstructThenSegment
from autopipe.models.unet import PlainConvUNet


def _joint_unet(kwargs: dict) -> JointUNet:
    if not isinstance(kwargs.get("hand_head"), dict):
        raise AutopipeError("this joint model was trained by an earlier autopipe, whose hand-function head saw one "
                            "patch at a time; this version's head reads the whole brain's lesion map",
                            fix="train it again: `autopipe train FOLD -c joint_CONFIGURATION --force`")
    return JointUNet(**kwargs)


def _attention_unet(kwargs: dict) -> AttentionUNet2d:
    kwargs = dict(kwargs)
    return AttentionUNet2d(in_channels=1, num_classes=kwargs.pop("classes", 2), **kwargs)


ARCHITECTURES: dict[str, Callable[[dict], nn.Module]] = {
    "PlainConvUNet": lambda kwargs: PlainConvUNet(**kwargs),
    "JointUNet": _joint_unet,
    "CIRIM": lambda kwargs: CIRIM(**kwargs),
    "AttentionUNet2d": _attention_unet,
    "ReconstructThenSegment": lambda kwargs: ReconstructThenSegment(CIRIM(**kwargs["reconstruction"]),
                                                                    _attention_unet(kwargs["segmentation"])),
    "MTLRS": lambda kwargs: MTLRS(**kwargs),
}

_LEGACY_SLICE_MODELS = {"cirim": "CIRIM", "segmentation_fully_sampled": "AttentionUNet2d",
                        "segmentation_on_cirim": "AttentionUNet2d", "end_to_end": "ReconstructThenSegment",
                        "joint": "MTLRS", "mtlrs": "MTLRS"}  # checkpoints written before they named an architecture


def build(architecture: str, kwargs: dict) -> nn.Module:
    """The untrained network `architecture` (a key of ARCHITECTURES) with constructor arguments `kwargs`."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](kwargs)


def architecture_of(state: dict, where: Path | None = None) -> str:
    """The architecture a checkpoint names; checkpoints of autopipe before it recorded one are told by their kind."""
    if "architecture" in state:
        name = state["architecture"]
    elif state.get("kind") == "slice_model":
        name = _LEGACY_SLICE_MODELS.get(state.get("model", ""), "")
    else:
        name = "JointUNet" if state["network_kwargs"].get("hand_head") else "PlainConvUNet"
    if name not in ARCHITECTURES:
        raise AutopipeError(f"the checkpoint names an unknown architecture {name!r}",
                            where=None if where is None else str(where),
                            fix=f"this autopipe builds {', '.join(ARCHITECTURES)}: update autopipe, or train again")
    return name


def load_network(path: Path, device: torch.device | str = "cpu", **overrides: object) -> tuple[nn.Module, dict]:
    """(the trained network in eval mode on `device`, its checkpoint) from `path` alone; `overrides` replace
    constructor arguments that do not change the weights (deep_supervision=False for inference)."""
    state = load_checkpoint(path, map_location=device)
    architecture = architecture_of(state, path)
    try:
        network = build(architecture, {**state["network_kwargs"], **overrides})
        network.load_state_dict(state["network"])
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # kwargs or weights that do not fit
        raise AutopipeError(f"the checkpoint's network does not build as a {architecture} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]})", where=str(path),
                            fix="train the fold again (`autopipe train FOLD --force`)") from None
    return network.to(device).eval(), state
