"""Trained networks back from their checkpoints, ready for inference (eval mode, one output, on a device)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from autopipe.errors import AutopipeError
from autopipe.models.architectures import load_network
from autopipe.models.checkpoint import checkpoint_path

ENSEMBLES_KEPT = 4  # an ensemble's members and the hand-function configuration's folds, with room to spare


@dataclass(frozen=True)
class TrainedModel:
    """One fold's network and what inference needs to feed it."""

    network: torch.nn.Module
    patch_size: tuple[int, ...]
    transpose_forward: tuple[int, ...]
    in_channels: int
    num_classes: int
    configuration: str
    fold: str
    source: Path


def load_model(path: Path, device: torch.device) -> TrainedModel:
    """The network in `path` (a checkpoint), in eval mode without deep supervision, on `device`; a joint model
    comes back as a JointUNet (autopipe.models.architectures)."""
    network, state = load_network(path, device, deep_supervision=False)
    kwargs = state["network_kwargs"]
    return TrainedModel(network, tuple(state["patch_size"]), tuple(state["transpose_forward"]),
                        kwargs["in_channels"], kwargs["num_classes"], state.get("configuration", "?"),
                        str(state.get("fold", "?")), path)


def trained_folds(configuration_dir: Path, checkpoint: str = "final") -> list[Path]:
    """Checkpoints of every fold of a configuration that finished training, sorted by fold folder."""
    return sorted(p for d in configuration_dir.glob("fold_*") if (p := checkpoint_path(d, checkpoint)).is_file())


def load_ensemble(paths: list[Path], device: torch.device) -> list[TrainedModel]:
    """Models that can be averaged: same channels, classes and axis order, else an AutopipeError."""
    if not paths:
        raise AutopipeError("no trained model to predict with", fix="run `autopipe train FOLD` first")
    models = [load_model(p, device) for p in paths]
    first = models[0]
    for model in models[1:]:
        if (model.in_channels, model.num_classes, model.transpose_forward) != \
                (first.in_channels, first.num_classes, first.transpose_forward):
            raise AutopipeError("these models cannot be ensembled: they differ in input channels, classes or axis "
                                f"order ({first.source} vs {model.source})",
                                fix="retrain the folds with one plan, or predict with one configuration at a time")
    return models


def shared_ensemble(paths: tuple[Path, ...] | list[Path], device: torch.device) -> list[TrainedModel]:
    """load_ensemble, done once per process for the same checkpoint files (unchanged since) and device: `predict`
    and a Dask worker predicting one case after another keep their models instead of reading them per case."""
    return _cached_ensemble(tuple((Path(p), Path(p).stat().st_mtime_ns) for p in paths), device)


@functools.lru_cache(maxsize=ENSEMBLES_KEPT)
def _cached_ensemble(files: tuple[tuple[Path, int], ...], device: torch.device) -> list[TrainedModel]:
    return load_ensemble([path for path, _ in files], device)
