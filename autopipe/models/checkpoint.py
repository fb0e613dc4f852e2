"""Checkpoints: written atomically, read back with a clear message when a file is damaged or foreign.

A checkpoint is a plain dict saved with torch.save and loaded with weights_only=True (tensors, numbers,
strings, lists, dicts: nothing executable). Keys:

    format_version, kind, fold, epoch (epochs completed),
    architecture and network_kwargs (autopipe.models.architectures rebuilds the network from them alone, so
        predictions never depend on a later plan edit),
    plan_digest, settings, seed, network, optimizer, scaler (state dicts; scaler None without mixed
        precision), history (one record per epoch)
    kind "segmentation" (autopipe.train.segmentation_task) adds configuration, patch_size, transpose_forward,
        best_ema_dice
    kind "joint" (the same task with a hand-function head) adds to those hand_weight (r), and
        network_kwargs["hand_head"] (the head's grid; a bare True in checkpoints of the earlier patch head)
    kind "slice_model" (autopipe.train.slice_task) adds model, best_val_loss
"""

from __future__ import annotations

from pathlib import Path

import torch

from autopipe.errors import AutopipeError
from autopipe.files import atomic_path

FORMAT_VERSION = 1
NAMES = ("latest", "best", "final")
REQUIRED = ("format_version", "kind", "epoch", "network_kwargs", "network")


def checkpoint_path(folder: Path, name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"checkpoint name must be one of {NAMES}, got {name!r}")
    return folder / f"checkpoint_{name}.pt"


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write `state` to `path` atomically: a crash mid-write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    return path


def save_final(folder: Path, state: dict) -> None:
    """The end of a run: `state` as checkpoint_final (and as checkpoint_best when no epoch was best), and
    checkpoint_latest removed, so a finished run is never mistaken for an interrupted one."""
    save_checkpoint(checkpoint_path(folder, "final"), state)
    if not checkpoint_path(folder, "best").is_file():
        save_checkpoint(checkpoint_path(folder, "best"), state)
    checkpoint_path(folder, "latest").unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by save_checkpoint; AutopipeError naming the file if it is missing or damaged."""
    fix = "train the fold again (`autopipe train FOLD --force`), or restore the file from a backup"
    if not path.is_file():
        raise AutopipeError("checkpoint not found", where=str(path), fix=fix)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike mean a damaged file
        raise AutopipeError(f"checkpoint cannot be read ({type(exc).__name__}: {exc})", where=str(path),
                            fix=fix) from None
    missing = [key for key in REQUIRED if not isinstance(state, dict) or key not in state]
    if missing:
        raise AutopipeError(f"not an autopipe checkpoint (missing {', '.join(missing)})", where=str(path), fix=fix)
    if state["format_version"] != FORMAT_VERSION:
        raise AutopipeError(f"checkpoint format {state['format_version']}, this autopipe reads {FORMAT_VERSION}",
                            where=str(path), fix=fix)
    return state
