"""The k-space slice task of the training loop (autopipe.train.fit): one model of the reconstruction +
segmentation comparison, a k-space slice per step.

What a model sees and learns follows from its spec (autopipe.models.slice_models.SLICE_MODELS): a model that
only reconstructs learns the reconstruction loss, one that only segments learns the segmentation loss on the
image it sees, and one that does both learns the combined loss (autopipe.train.recon_loss). Adam with MTLRS'
inverse-square-root schedule (10% warm-up) set per step, gradient clipping; the slice order is a pure function
of (seed, epoch) (autopipe.train.sampling.epoch_order). Best checkpoint: the lowest validation loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from autopipe.distributed import Ranks, mean_across_ranks, sum_across_ranks
from autopipe.models.checkpoint import load_checkpoint
from autopipe.models.mtlrs import MultitaskOutput
from autopipe.models.slice_models import SLICE_MODELS, build_model, load_trained, warm_start
from autopipe.preprocess.kspace_slices import SliceRef, load_slice, slice_refs
from autopipe.progress import Progress
from autopipe.train.fit import Job
from autopipe.train.loss import confusion_counts, pseudo_dice
from autopipe.train.recon_loss import multitask_loss, reconstruction_loss, segmentation_loss
from autopipe.train.sampling import epoch_order
from autopipe.train.schedule import inverse_sqrt_lr

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
    segmentation_supervision: str = "final_cascade"
    seed: int = 12345


@dataclass(frozen=True)
class SliceTask:
    """Model `model` (a key of SLICE_MODELS) on the prepared k-space slices in `kspace_dir`."""

    model: str
    model_kwargs: dict
    kspace_dir: Path
    settings: SliceSettings
    planned_seconds_per_step: float | None = None  # the plan's estimate, to compare with what training measures
    classes: tuple[str, ...] | None = None  # the segmentation classes, checked against the prepared slices
    best_key: ClassVar[str] = "best_val_loss"
    higher_is_better: ClassVar[bool] = False

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    def seed(self) -> int:
        return self.settings.seed

    def build(self) -> nn.Module:
        return build_model(self.model, self.model_kwargs)

    def optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(network.parameters(), lr=self.settings.learning_rate)

    def mixed_precision(self, device: torch.device) -> bool:
        return False

    def runner(self, job: Job, network: nn.Module, device: torch.device, ranks: Ranks, resumed: bool) -> SliceRun:
        return SliceRun(self, job, network, device, ranks, resumed)

    def score(self, record: dict) -> float:
        return record["val_loss"]

    def describe_run(self, job: Job, device: torch.device, ranks: Ranks) -> str:
        return (f"training {job.name} fold {job.fold} on {device}: {len(job.train_cases)} train / "
                f"{len(job.val_cases)} validation cases with k-space, {self.settings.epochs} epochs, "
                f"lr {self.settings.learning_rate:g}")

    def describe_epoch(self, job: Job, r: dict, improved: bool) -> str:
        dice = "" if math.isnan(r["pseudo_dice"]) else f", pseudo Dice {r['pseudo_dice']:.3f}"
        return (f"{job.name} fold {job.fold} epoch {r['epoch'] + 1}/{self.settings.epochs}: train loss "
                f"{r['train_loss']:.4f}, validation loss {r['val_loss']:.4f}{dice}{' (best)' if improved else ''}, "
                f"lr {r['lr']:.2g}, {r['seconds']:.1f} s")

    def describe_end(self, job: Job, history: list[dict]) -> str:
        steps = len(slice_refs(self.kspace_dir, list(job.train_cases), SLICE_MODELS[self.model].segments))
        measured = float(np.median([r["seconds"] for r in history])) / max(1, steps)
        planned = "" if self.planned_seconds_per_step is None else f", {self.planned_seconds_per_step:.3f} s planned"
        return (f"{job.name} fold {job.fold}: {measured:.3f} s per slice measured (median epoch over its {steps} "
                f"training slices, validation included){planned}")

    def network_kwargs(self) -> dict:
        return self.model_kwargs

    def header(self, job: Job) -> dict:
        return {"kind": KIND, "architecture": SLICE_MODELS[self.model].architecture, "model": self.model,
                "network_kwargs": self.model_kwargs, "settings": asdict(self.settings)}

    def resumable_from(self, state: dict) -> str | None:
        """Why an interrupted run cannot be resumed with these settings (None when it can)."""
        if state["settings"]["epochs"] != self.settings.epochs:
            return f"the interrupted run had {state['settings']['epochs']} epochs, now {self.settings.epochs}"
        return None


class SliceRun:
    """A slice task at work: this rank's slices, the schedule, and the trained cirim it starts from or sees."""

    def __init__(self, task: SliceTask, job: Job, network: nn.Module, device: torch.device, ranks: Ranks,
                 resumed: bool) -> None:
        self.task, self.job, self.device, self.ranks = task, job, device, ranks
        settings, spec = task.settings, SLICE_MODELS[task.model]
        self.train_refs = slice_refs(task.kspace_dir, list(job.train_cases), spec.segments, task.classes)
        val_refs = slice_refs(task.kspace_dir, list(job.val_cases or job.train_cases), spec.segments, task.classes)
        self.val_refs = _evenly_spaced(val_refs, max(ranks.world_size, min(len(val_refs), settings.validation_slices)))
        self.reconstruct = None
        upstream = job.builds_on
        if upstream is not None and spec.sees == "cirim":
            self.reconstruct = frozen_reconstruction(upstream.checkpoint, device)
        elif upstream is not None and not resumed:
            warm_start(task.model, network, load_checkpoint(upstream.checkpoint, map_location=device)["network"])
            log.info("%s starts from the trained %s (%s)", job.name, upstream.model, upstream.checkpoint)
        self.steps_per_epoch = len(epoch_order(len(self.train_refs), 0, settings.seed, ranks.rank, ranks.world_size))
        self.warmup = max(1, round(settings.warmup_fraction * settings.epochs * self.steps_per_epoch))

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    epoch: int, show: bool) -> dict:
        """One pass over this rank's slices in the epoch's order: the mean loss over ranks and the last rate."""
        settings, ranks = self.task.settings, self.ranks
        order = epoch_order(len(self.train_refs), epoch, settings.seed, ranks.rank, ranks.world_size)
        model.train()
        losses, lr = [], settings.learning_rate
        with Progress(len(order), f"{self.job.name} fold {self.job.fold} epoch {epoch + 1}/{settings.epochs}",
                      enabled=show) as bar:
            for i, ref in enumerate(self.train_refs[k] for k in order):
                lr = inverse_sqrt_lr(settings.learning_rate, epoch * self.steps_per_epoch + i, self.warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = self._batch(ref)
                optimizer.zero_grad(set_to_none=True)
                loss, _, _ = slice_loss(self.task.model, model, batch, self.task.settings, self.reconstruct)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                losses.append(loss.detach())
                bar.advance()
        return {"train_loss": mean_across_ranks(losses, self.device), "lr": lr}

    @torch.no_grad()
    def validate(self, model: nn.Module, epoch: int, history: list[dict]) -> dict:
        """Mean loss and pseudo Dice (mean over the foreground classes; nan for cirim) over the validation
        slices of every rank."""
        model.eval()
        device = self.device
        loss_sum, counts = torch.zeros((), device=device), None  # counts: [3, K - 1] tp, fp, fn per class
        refs = self.val_refs[self.ranks.rank::self.ranks.world_size]
        for ref in refs:
            batch = self._batch(ref)
            loss, _, output = slice_loss(self.task.model, model, batch, self.task.settings, self.reconstruct)
            loss_sum += loss
            logits = output.segmentation if isinstance(output, MultitaskOutput) and output.segmentations else output
            if isinstance(logits, torch.Tensor):
                batch_counts = torch.stack(confusion_counts(logits, batch["segmentation"])).to(loss_sum)
                counts = batch_counts if counts is None else counts + batch_counts
        head = torch.stack([loss_sum, torch.tensor(float(len(refs)), device=device)])
        total = sum_across_ranks(head if counts is None else torch.cat([head, counts.flatten()]))
        dice = math.nan
        if counts is not None:
            tp, fp, fn = total[2:].reshape(3, -1)
            dice = float(np.nanmean(pseudo_dice(tp, fp, fn))) if (2 * tp + fp + fn).sum() > 0 else math.nan
        return {"val_loss": float(total[0] / total[1].clamp(min=1)), "pseudo_dice": dice}

    def _batch(self, ref: SliceRef) -> dict:
        batch = load_slice(self.task.kspace_dir, ref, self.device)
        batch["key"] = (ref.case, ref.index)
        return batch


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


def segmentation_input(model: str, batch: dict[str, torch.Tensor],
                       reconstruct: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None) -> torch.Tensor:
    """[B, 1, H, W] magnitude a segmentation-only model sees: the fully sampled image, or the frozen
    reconstruction's (`reconstruct` maps a batch to its complex image)."""
    if SLICE_MODELS[model].sees == "fully_sampled":
        return batch["target"].abs()[:, None]
    if reconstruct is None:
        raise ValueError(f"{model} needs the trained reconstruction network")
    return reconstruct(batch).abs()[:, None]


def slice_loss(model: str, network: nn.Module, batch: dict[str, torch.Tensor], settings: SliceSettings,
               reconstruct: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, float], MultitaskOutput | torch.Tensor]:
    """Loss of one batch for `model`: (loss, its float parts, the network's output).

    The settings' segmentation and reconstruction weights and segmentation supervision shape the combined loss
    of the models that do both (see multitask_loss).
    """
    spec = SLICE_MODELS[model]
    if not spec.segments:
        estimates = network(batch["kspace"], batch["maps"], batch["mask"])
        loss = reconstruction_loss(estimates, batch["target"])
        return loss, {"reconstruction": loss.item(), "total": loss.item()}, MultitaskOutput(estimates, [])
    if not spec.reconstructs:
        logits = network(segmentation_input(model, batch, reconstruct))
        loss = segmentation_loss(logits, batch["segmentation"])
        return loss, {"segmentation": loss.item(), "total": loss.item()}, logits
    output = network(batch["kspace"], batch["maps"], batch["mask"])
    loss, parts = multitask_loss(output, batch["target"], batch["segmentation"],
                                 segmentation_weight=settings.segmentation_weight,
                                 reconstruction_weight=settings.reconstruction_weight,
                                 supervision=settings.segmentation_supervision)
    return loss, parts, output


def _evenly_spaced(refs: list[SliceRef], count: int) -> list[SliceRef]:
    """`count` slices spread over the list (so validation sees every case), cut to what exists."""
    if count >= len(refs):
        return refs
    return [refs[int(i)] for i in np.linspace(0, len(refs) - 1, count).round()]
