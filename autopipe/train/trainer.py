"""Train one segmentation configuration on one fold: a linear loop of epoch -> steps -> validation -> checkpoint.

Every part is injected or built from the plan: the network (autopipe.models.unet), the loss
(autopipe.train.loss), the batches (autopipe.train.batches), the schedule (autopipe.train.schedule).
Batch k is a pure function of (seed, rank, k) and every epoch ends in a checkpoint holding the network,
optimizer and (on CUDA) gradient-scaler state, so a run resumed with `--continue` continues exactly
where it stopped: on a CPU the weights equal those of an uninterrupted run.

A job with hand_weight r > 0 trains the joint model (autopipe.models.joint_unet): the same U-Net with a
hand-function head on its bottleneck, minimising L_seg + r L_cls where every patch carries the hand-function
label of its case (autopipe.train.joint_loss).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from autopipe.distributed import Ranks, barrier, mean_across_ranks, sum_across_ranks
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, save_final
from autopipe.models.joint_unet import build_joint_network
from autopipe.models.unet import build_network, output_strides
from autopipe.plan.configs import INITIAL_LR, OPTIMIZERS, SegmentationConfig
from autopipe.progress import Progress
from autopipe.train.batches import PatchBatches, batch_loader
from autopipe.train.curves import write_progress
from autopipe.train.joint_loss import joint_loss, pos_weight_for
from autopipe.train.loss import confusion_counts, deep_supervision_loss, deep_supervision_weights, pseudo_dice
from autopipe.train.schedule import poly_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    """How to train; nnU-Net's optimizer defaults. `epochs` and `iterations_per_epoch` come from the plan."""

    epochs: int
    iterations_per_epoch: int
    validation_iterations: int = 10
    optimizer: str = "sgd"  # a key of autopipe.plan.configs.OPTIMIZERS
    initial_lr: float = INITIAL_LR["sgd"]
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    ema_weight: float = 0.9  # moving average of the pseudo Dice: 0.9 old + 0.1 new (nnU-Net)
    seed: int = 12345
    loader_workers: int = 0
    mixed_precision: bool = True  # on CUDA only


def make_optimizer(name: str, parameters, settings: TrainingSettings) -> torch.optim.Optimizer:
    """The optimizer `name` (a key of OPTIMIZERS) over `parameters`."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=settings.initial_lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay, nesterov=True)
    if name == "adam":
        return torch.optim.AdamW(parameters, lr=settings.initial_lr, weight_decay=settings.weight_decay)
    raise ValueError(f"optimizer {name!r} unknown; choose one of {', '.join(OPTIMIZERS)}")


@dataclass(frozen=True)
class TrainingJob:
    """What to train: one configuration of the plan on one fold's cases; with hand_weight > 0 the joint model,
    whose hand_labels (case, 0/1) cover every training case (and the labelled validation cases)."""

    name: str
    fold: str
    config: SegmentationConfig
    preprocessed: Path
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    transpose_forward: tuple[int, ...]
    in_channels: int
    num_classes: int
    out_dir: Path
    plan_digest: str
    settings: TrainingSettings
    hand_labels: tuple[tuple[str, int], ...] = ()
    hand_weight: float = 0.0

    @property
    def joint(self) -> bool:
        """Whether this job trains the joint segmentation + hand-function model."""
        return self.hand_weight > 0


def network_kwargs(job: TrainingJob) -> dict:
    """The network's constructor arguments, stored in checkpoints so predictions never need the plan."""
    c = job.config
    return {"in_channels": job.in_channels, "num_classes": job.num_classes,
            "features_per_stage": list(c.features_per_stage), "kernel_sizes": [list(k) for k in c.kernel_sizes],
            "strides": [list(s) for s in c.strides], "n_conv_per_stage": c.n_conv_per_stage,
            "deep_supervision": c.deep_supervision, **({"hand_head": True} if job.joint else {})}


@dataclass(frozen=True)
class HandTask:
    """A joint job's hand-function term: each case's label, r, and the training cases' class balance."""

    labels: dict[str, int]
    weight: float
    pos_weight: float

    def loss(self, seg_loss: torch.Tensor, logits: torch.Tensor,
             cases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(L_joint, L_cls, number of labelled samples) of a batch; samples of unlabelled cases are left out of
        L_cls, which is 0 when none is labelled."""
        known = [i for i, case in enumerate(cases) if case in self.labels]
        if not known:  # 0 x the logits: the head still gets a (zero) gradient, which DDP waits for
            return seg_loss + 0.0 * logits.float().sum(), torch.zeros((), device=logits.device), 0
        labels = torch.tensor([float(self.labels[cases[i]]) for i in known], device=logits.device)
        index = torch.tensor(known, device=logits.device)
        total, cls = joint_loss(seg_loss, logits[index], labels, self.weight, self.pos_weight)
        return total, cls, len(known)


def hand_task(job: TrainingJob) -> HandTask | None:
    """The hand-function term of a joint job (None for a plain one); ValueError when the labelled training cases
    hold one class only. Unlabelled cases train the segmentation alone."""
    if not job.joint:
        return None
    labels = dict(job.hand_labels)
    return HandTask(labels, job.hand_weight, pos_weight_for([labels[c] for c in job.train_cases if c in labels]))


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """The planned batch is split over the ranks (nnU-Net's DDP rule), at least one sample each."""
    return max(1, batch_size // world_size)


def train(job: TrainingJob, device: torch.device, ranks: Ranks | None = None, resume: bool = False,
          progress: bool = True) -> dict:
    """Train `job`; returns {"epochs", "best_ema_dice", "seconds", "history"}. Writes under job.out_dir:
    checkpoint_latest.pt (every epoch; removed when finished), checkpoint_best.pt, checkpoint_final.pt,
    progress.png and progress.json."""
    settings, ranks = job.settings, ranks or Ranks()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(settings.seed)
    hand = hand_task(job)
    network = (build_joint_network if job.joint else build_network)(job.config, job.in_channels,
                                                                     job.num_classes).to(device)
    optimizer = make_optimizer(settings.optimizer, network.parameters(), settings)
    amp = device.type == "cuda" and settings.mixed_precision
    scaler = torch.amp.GradScaler("cuda") if amp else None
    history: list[dict] = []
    best = -math.inf
    start_epoch = 0
    if resume:
        state = load_checkpoint(checkpoint_path(job.out_dir, "latest"), map_location=device)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best, start_epoch = list(state["history"]), float(state["best_ema_dice"]), int(state["epoch"])
        log.info("resuming %s fold %s after epoch %d of %d", job.name, job.fold, start_epoch, settings.epochs)
    model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks.distributed else network
    batch_size = per_rank_batch_size(job.config.batch_size, ranks.world_size)
    patch = job.config.patch_size

    def batches(cases: tuple[str, ...], augment: bool, stream: str) -> PatchBatches:
        return PatchBatches(job.preprocessed, cases, patch, batch_size, job.transpose_forward, settings.seed,
                            augment=augment, rank=ranks.rank, stream=stream)

    training = batches(job.train_cases, True, "train")
    validation = batches(job.val_cases or job.train_cases, False, "validation")  # fold "all": its own cases
    strides = output_strides(job.config.strides)
    weights = deep_supervision_weights(len(strides)) if job.config.deep_supervision else (1.0,)
    started = time.monotonic()
    for epoch in range(start_epoch, settings.epochs):
        lr = poly_lr(settings.initial_lr, epoch, settings.epochs, settings.poly_exponent)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tick = time.monotonic()
        train_loss, train_hand, wait = _train_epoch(model, optimizer, scaler, training, epoch, job, device, strides,
                                                    weights, hand, progress and ranks.is_main)
        val_loss, val_hand, dice = _validate(model, validation, epoch, job, device, strides, weights, hand)
        ema = _moving_average(history[-1]["ema_pseudo_dice"] if history else math.nan, dice, settings.ema_weight)
        seconds = time.monotonic() - tick
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "pseudo_dice": dice,
                        "ema_pseudo_dice": ema, "lr": lr, "seconds": round(seconds, 3),
                        "data_wait": round(wait / seconds, 4),
                        **({"train_hand_loss": train_hand, "val_hand_loss": val_hand} if hand else {})})
        improved = not math.isnan(ema) and ema > best
        best = ema if improved else best
        if ranks.is_main:
            log.info("%s fold %s epoch %d/%d: train loss %.4f, validation loss %.4f, pseudo Dice %.3f (average "
                     "%.3f%s), lr %.5f, %.1f s (%.0f%% waiting for data)%s", job.name, job.fold, epoch + 1,
                     settings.epochs, train_loss, val_loss, dice, ema, ", new best" if improved else "", lr, seconds,
                     100 * wait / seconds,
                     f"; hand-function loss {train_hand:.4f} train, {val_hand:.4f} validation" if hand else "")
            state = _state(job, network, optimizer, scaler, history, best, epoch + 1)
            if improved:
                save_checkpoint(checkpoint_path(job.out_dir, "best"), state)
            save_checkpoint(checkpoint_path(job.out_dir, "latest"), state)
            _write_curves(job, history)
        barrier()
    if ranks.is_main:
        if start_epoch >= settings.epochs:
            log.info("%s fold %s: all %d epochs were already done", job.name, job.fold, settings.epochs)
        save_final(job.out_dir, _state(job, network, optimizer, scaler, history, best, settings.epochs))
        _write_curves(job, history)
    barrier()
    return {"epochs": settings.epochs, "best_ema_dice": best, "seconds": round(time.monotonic() - started, 1),
            "history": history}


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                 batches: PatchBatches, epoch: int, job: TrainingJob, device: torch.device,
                 strides: list[tuple[int, ...]], weights: tuple[float, ...], hand: HandTask | None,
                 show: bool) -> tuple[float, float, float]:
    """One epoch of steps; returns the mean loss and hand-function loss (nan without `hand`) over ranks, and the
    seconds spent waiting for batches."""
    settings = job.settings
    model.train()
    losses, hand_losses, waited = [], [], 0.0
    count = settings.iterations_per_epoch
    loader = iter(batch_loader(batches, epoch * count, count, settings.loader_workers))
    with Progress(count, f"{job.name} fold {job.fold} epoch {epoch + 1}/{settings.epochs}", enabled=show) as bar:
        for _ in range(count):
            tick = time.monotonic()
            batch = next(loader)
            waited += time.monotonic() - tick
            data = batch["data"].to(device, non_blocking=True)
            target = batch["target"].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=scaler is not None):
                outputs, hand_logits = _forward(model, data, hand)
                loss = deep_supervision_loss(outputs, target, strides, weights) + _unweighted(outputs, weights)
                if hand is not None:
                    loss, hand_loss, _ = hand.loss(loss, hand_logits, batch["cases"])
                    hand_losses.append(hand_loss.detach())
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
            losses.append(loss.detach())
            bar.advance()
    return mean_across_ranks(losses, device), mean_across_ranks(hand_losses, device) if hand else math.nan, waited


@torch.no_grad()
def _validate(model: torch.nn.Module, batches: PatchBatches, epoch: int, job: TrainingJob, device: torch.device,
              strides: list[tuple[int, ...]], weights: tuple[float, ...],
              hand: HandTask | None) -> tuple[float, float, float]:
    """Loss, hand-function loss (nan without `hand` or labelled samples) and lesion pseudo Dice on validation
    patches; every rank sees the same number of batches."""
    model.eval()
    count = job.settings.validation_iterations
    sums = torch.zeros(3, device=device)  # loss, hand-function loss x its samples, labelled samples
    counts = torch.zeros(3, job.num_classes - 1, device=device)
    for batch in batch_loader(batches, epoch * count, count, 0):
        data, target = batch["data"].to(device), batch["target"].to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda" and job.settings.mixed_precision):
            outputs, hand_logits = _forward(model, data, hand)
            loss = deep_supervision_loss(outputs, target, strides, weights).float()
            if hand is not None:
                loss, hand_loss, labelled = hand.loss(loss, hand_logits, batch["cases"])
                sums[1:] += torch.stack([hand_loss.float() * labelled, torch.tensor(float(labelled), device=device)])
            sums[0] += loss.float()
        full = outputs[0] if isinstance(outputs, list | tuple) else outputs
        counts += torch.stack(confusion_counts(full.float(), target)).to(counts)
    total = sum_across_ranks(torch.cat([sums, torch.tensor([float(count)], device=device), counts.flatten()]))
    tp, fp, fn = total[4:].reshape(3, -1)
    dice = float(np.nanmean(pseudo_dice(tp, fp, fn))) if (2 * tp + fp + fn).sum() > 0 else math.nan
    return float(total[0] / total[3]), float(total[1] / total[2]) if total[2] > 0 else math.nan, dice


def _forward(model: torch.nn.Module, data: torch.Tensor,
             hand: HandTask | None) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
    """(segmentation outputs, hand-function logits or None); through model.__call__ so that DDP sees the pass."""
    return model(data, joint=True) if hand is not None else (model(data), None)


def _unweighted(outputs: list[torch.Tensor] | torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor | float:
    """0 x the outputs whose deep-supervision weight is 0: their heads then get a zero gradient, which DDP needs
    (it waits for a gradient of every parameter), at the cost of one sum over the coarsest output."""
    if not isinstance(outputs, list | tuple):
        return 0.0
    return sum((0.0 * o.float().sum() for o, w in zip(outputs, weights, strict=False) if w == 0), 0.0)


def _moving_average(previous: float, value: float, weight: float) -> float:
    """weight * previous + (1 - weight) * value, where a missing (nan) side gives way to the other."""
    if math.isnan(previous):
        return value
    return previous if math.isnan(value) else weight * previous + (1 - weight) * value


def _state(job: TrainingJob, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler | None, history: list[dict], best: float, epoch: int) -> dict:
    return {
        "kind": "joint" if job.joint else "segmentation",
        "architecture": "JointUNet" if job.joint else job.config.network,
        "configuration": job.name, "fold": job.fold, "epoch": epoch,
        "network_kwargs": network_kwargs(job), "patch_size": list(job.config.patch_size),
        "transpose_forward": list(job.transpose_forward), "plan_digest": job.plan_digest,
        "settings": asdict(job.settings), "seed": job.settings.seed,
        "network": network.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history, "best_ema_dice": best, **({"hand_weight": job.hand_weight} if job.joint else {}),
    }


def _write_curves(job: TrainingJob, history: list[dict]) -> None:
    write_progress(history, job.out_dir, f"{job.name}, fold {job.fold}")


def default_loader_workers(device_type: str, cores: int) -> int:
    """Batch-preparing processes: on a GPU all spare cores (up to 8) so the GPU never waits; on a CPU with few
    cores none, because augmentation and the network compete for the same cores (benchmarks/train_speed.py)."""
    if device_type != "cpu":
        return max(1, min(8, cores - 1))
    return 0 if cores <= 4 else min(4, cores // 4)
