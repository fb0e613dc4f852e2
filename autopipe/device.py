"""Which torch device trains and predicts: the plan's, if present here, else the best one present."""

from __future__ import annotations

import logging

import torch

from autopipe.errors import AutopipeError

log = logging.getLogger(__name__)

DEVICE_TYPES = ("cuda", "mps", "cpu")


def available_device_type() -> str:
    """'cuda' if an NVIDIA GPU is visible, else 'mps' on Apple silicon, else 'cpu'."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def choose_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """The device to use: `requested` ('cuda', 'mps', 'cpu') or the best available; GPU `local_rank` under torchrun."""
    kind = requested or available_device_type()
    if kind not in DEVICE_TYPES:
        raise AutopipeError(f"unknown device '{kind}'", fix=f"use one of {', '.join(DEVICE_TYPES)}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise AutopipeError("--device cuda was asked for, but torch sees no NVIDIA GPU",
                                fix="leave --device out to use what is there, or install a CUDA build of torch")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise AutopipeError(f"process {local_rank} needs GPU {local_rank}, but only {count} are visible",
                                fix="start at most one process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if kind == "mps" and available_device_type() != "mps":
        raise AutopipeError("--device mps was asked for, but this machine has no Apple GPU",
                            fix="leave --device out to use what is there")
    return torch.device(kind)
