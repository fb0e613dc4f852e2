"""Train one model of the reconstruction + segmentation comparison on one fold, a k-space slice per step.

The loop mirrors the segmentation trainer: epoch -> steps -> validation -> checkpoint. Adam with
MTLRS' inverse-square-root schedule (10% warm-up) and gradient clipping. The slice order is a pure
function of (seed, epoch) and every epoch ends in a checkpoint with the optimizer state and the step
count, so `--continue` resumes exactly. Best checkpoint: the lowest validation loss.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from autopipe.distributed import Ranks, barrier, mean_across_ranks, sum_across_ranks
from autopipe.models.architectures import SLICE_MODEL_ARCHITECTURES
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, save_final
from autopipe.models.mtlrs import MultitaskOutput
from autopipe.models.slice_models import build_model, load_trained, warm_start
from autopipe.preprocess.kspace_slices import SliceRef, load_slice, slice_refs
from autopipe.progress import Progress
from autopipe.train.curves import write_progress
from autopipe.train.loss import confusion_counts, pseudo_dice
from autopipe.train.sampling import epoch_order
from autopipe.train.schedule import inverse_sqrt_lr
from autopipe.train.slice_models import needs_segmentation, slice_loss

log = logging.getLogger(__name__)

KIND = "slice_model"


@dataclass(frozen=True)
class SliceSettings:
    """How to train a slice model; MTLRS' published optimizer, with epochs and rate from the plan."""

    epochs: int
    learning_rate: float
    warmup_fraction: float = 0.1
    grad_clip: float = 10.0
    validation_slices: int = 16
    segmentation_weight: float = 0.9
    reconstruction_weight: float = 0.1
    seed: int = 12345


@dataclass(frozen=True)
class SliceJob:
    """What to train: model `name` on the k-space slices of one fold's cases."""

    name: str
    fold: str
    model_kwargs: dict
    kspace_dir: Path
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    out_dir: Path
    plan_digest: str
    settings: SliceSettings
    # the trained cirim this model depends on: segmentation_on_cirim segments its images; end_to_end, joint and
    # mtlrs start from its weights (a warm start, when the plan asks for one)
    reconstruction_checkpoint: Path | None = None


def frozen_reconstruction(path: Path, device: torch.device) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """batch -> final complex image of the trained CIRIM in `path`, without gradients, cached per slice."""
    network = load_trained(path, device)
    cache: dict[tuple, torch.Tensor] = {}

    def reconstruct(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        key = batch.get("key")
        if key is not None and key in cache:
            return cache[key].to(device)
        with torch.no_grad():
            image = network(batch["kspace"], batch["maps"], batch["mask"])[-1][-1]
        if key is not None:
            cache[key] = image.cpu()
        return image

    return reconstruct


def train_slice_model(job: SliceJob, device: torch.device, ranks: Ranks | None = None, resume: bool = False,
                      progress: bool = True) -> dict:
    """Train `job`; returns {"epochs", "best_val_loss", "seconds", "history"}. Writes under job.out_dir the
    checkpoints (latest while training, best, final), progress.png and progress.json."""
    settings, ranks = job.settings, ranks or Ranks()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(settings.seed)
    network = build_model(job.name, job.model_kwargs).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    history: list[dict] = []
    best, start_epoch = math.inf, 0
    if resume:
        state = load_checkpoint(checkpoint_path(job.out_dir, "latest"), map_location=device)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        history, best, start_epoch = list(state["history"]), float(state["best_val_loss"]), int(state["epoch"])
        log.info("resuming %s fold %s after epoch %d of %d", job.name, job.fold, start_epoch, settings.epochs)
    model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks.distributed else network
    segment = needs_segmentation(job.name)
    train_refs = slice_refs(job.kspace_dir, list(job.train_cases), segment)
    val_refs = slice_refs(job.kspace_dir, list(job.val_cases or job.train_cases), segment)
    val_refs = _evenly_spaced(val_refs, max(ranks.world_size, min(len(val_refs), settings.validation_slices)))
    reconstruct = None
    if job.reconstruction_checkpoint is not None and job.name == "segmentation_on_cirim":
        reconstruct = frozen_reconstruction(job.reconstruction_checkpoint, device)
    elif job.reconstruction_checkpoint is not None and not resume:
        warm_start(job.name, network, load_checkpoint(job.reconstruction_checkpoint, map_location=device)["network"])
        log.info("%s starts from the trained cirim (%s)", job.name, job.reconstruction_checkpoint)
    steps_per_epoch = len(epoch_order(len(train_refs), 0, settings.seed, ranks.rank, ranks.world_size))
    warmup = max(1, round(settings.warmup_fraction * settings.epochs * steps_per_epoch))
    started = time.monotonic()
    for epoch in range(start_epoch, settings.epochs):
        tick = time.monotonic()
        order = epoch_order(len(train_refs), epoch, settings.seed, ranks.rank, ranks.world_size)
        train_loss, lr = _train_epoch(model, optimizer, job, [train_refs[i] for i in order], epoch, steps_per_epoch,
                                      warmup, device, reconstruct, progress and ranks.is_main)
        val_loss, dice = _validate(model, job, val_refs[ranks.rank::ranks.world_size], device, reconstruct)
        seconds = time.monotonic() - tick
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "pseudo_dice": dice,
                        "lr": lr, "seconds": round(seconds, 3)})
        improved = val_loss < best
        best = val_loss if improved else best
        if ranks.is_main:
            log.info("%s fold %s epoch %d/%d: train loss %.4f, validation loss %.4f%s%s, lr %.2g, %.1f s", job.name,
                     job.fold, epoch + 1, settings.epochs, train_loss, val_loss,
                     "" if math.isnan(dice) else f", lesion pseudo Dice {dice:.3f}", " (best)" if improved else "",
                     lr, seconds)
            state = _state(job, network, optimizer, history, best, epoch + 1, steps_per_epoch)
            if improved:
                save_checkpoint(checkpoint_path(job.out_dir, "best"), state)
            save_checkpoint(checkpoint_path(job.out_dir, "latest"), state)
            _write_curves(job, history)
        barrier()
    if ranks.is_main:
        save_final(job.out_dir, _state(job, network, optimizer, history, best, settings.epochs, steps_per_epoch))
        _write_curves(job, history)
    barrier()
    return {"epochs": settings.epochs, "best_val_loss": best, "seconds": round(time.monotonic() - started, 1),
            "history": history}


def _batch(job: SliceJob, ref: SliceRef, device: torch.device) -> dict:
    batch = load_slice(job.kspace_dir, ref, device)
    batch["key"] = (ref.case, ref.index)
    return batch


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, job: SliceJob, refs: list[SliceRef],
                 epoch: int, steps_per_epoch: int, warmup: int, device: torch.device,
                 reconstruct: Callable | None, show: bool) -> tuple[float, float]:
    """One pass over this rank's slices; returns the mean loss over ranks and the last learning rate."""
    settings = job.settings
    weights = (settings.segmentation_weight, settings.reconstruction_weight)
    model.train()
    losses, lr = [], settings.learning_rate
    with Progress(len(refs), f"{job.name} fold {job.fold} epoch {epoch + 1}/{settings.epochs}", enabled=show) as bar:
        for i, ref in enumerate(refs):
            lr = inverse_sqrt_lr(settings.learning_rate, epoch * steps_per_epoch + i, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = _batch(job, ref, device)
            optimizer.zero_grad(set_to_none=True)
            loss, _, _ = slice_loss(job.name, model, batch, weights, reconstruct)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            losses.append(loss.detach())
            bar.advance()
    return mean_across_ranks(losses, device), lr


@torch.no_grad()
def _validate(model: torch.nn.Module, job: SliceJob, refs: list[SliceRef], device: torch.device,
              reconstruct: Callable | None) -> tuple[float, float]:
    """Mean loss and lesion pseudo Dice (nan for cirim) over the validation slices of every rank."""
    settings = job.settings
    weights = (settings.segmentation_weight, settings.reconstruction_weight)
    model.eval()
    loss_sum, counts = torch.zeros((), device=device), torch.zeros(3, device=device)
    for ref in refs:
        batch = _batch(job, ref, device)
        loss, _, output = slice_loss(job.name, model, batch, weights, reconstruct)
        loss_sum += loss
        logits = output.segmentation if isinstance(output, MultitaskOutput) and output.segmentations else output
        if isinstance(logits, torch.Tensor):
            counts += torch.stack([c.sum() for c in confusion_counts(logits, batch["segmentation"])]).to(counts)
    total = sum_across_ranks(torch.cat([loss_sum.reshape(1), torch.tensor([float(len(refs))], device=device),
                                        counts]))
    tp, fp, fn = total[2:]
    dice = float(np.nanmean(pseudo_dice(tp[None], fp[None], fn[None]))) if (2 * tp + fp + fn) > 0 else math.nan
    return float(total[0] / total[1].clamp(min=1)), dice


def _evenly_spaced(refs: list[SliceRef], count: int) -> list[SliceRef]:
    """`count` slices spread over the list (so validation sees every case), cut to what exists."""
    if count >= len(refs):
        return refs
    return [refs[int(i)] for i in np.linspace(0, len(refs) - 1, count).round()]


def _state(job: SliceJob, network: torch.nn.Module, optimizer: torch.optim.Optimizer, history: list[dict],
           best: float, epoch: int, steps_per_epoch: int) -> dict:
    return {
        "kind": KIND, "architecture": SLICE_MODEL_ARCHITECTURES[job.name], "model": job.name, "fold": job.fold,
        "epoch": epoch, "steps": epoch * steps_per_epoch,
        "network_kwargs": job.model_kwargs,
        "plan_digest": job.plan_digest, "settings": asdict(job.settings), "seed": job.settings.seed,
        "network": network.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
        "best_val_loss": best,
    }


def _write_curves(job: SliceJob, history: list[dict]) -> None:
    write_progress(history, job.out_dir, f"{job.name}, fold {job.fold}")
