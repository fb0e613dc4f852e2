"""The segmentation task of the training loop (autopipe.train.fit): nnU-Net's U-Net on patches, and the joint model.

Batches of patches (autopipe.train.batches; batch k is a pure function of (seed, rank, k)), deep-supervision
Dice + cross-entropy (autopipe.train.loss), nnU-Net's SGD with the poly schedule set once per epoch, mixed
precision on CUDA, and validation by lesion pseudo Dice on validation patches, whose moving average picks the
best checkpoint.

A task with hand_weight r > 0 trains the joint model (autopipe.models.joint_unet): the same U-Net whose
whole-brain lesion map feeds a hand-function head, minimising L_seg + r L_cls (autopipe.train.joint_loss).
Every `brain_every`-th step adds one labelled training subject's whole brain to the step's patches (one per
rank, the subjects in a seeded order); L_cls of up to VALIDATION_BRAINS labelled validation subjects gives its
validation curve. The model starts from the fold's trained plain U-Net and a fitted head
(autopipe.train.joint_start).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autopipe.distributed import Ranks, mean_across_ranks, sum_across_ranks
from autopipe.models.joint_unet import Brain, build_joint_network
from autopipe.models.unet import build_network, output_strides
from autopipe.plan.configs import INITIAL_LR, OPTIMIZERS, SegmentationConfig
from autopipe.progress import Progress
from autopipe.train.batches import PatchBatches, batch_loader
from autopipe.train.fit import Job
from autopipe.train.joint_loss import hand_loss, joint_loss, pos_weight_for
from autopipe.train.joint_start import BrainSource, JointSettings, warm_start
from autopipe.train.loss import confusion_counts, deep_supervision_loss, deep_supervision_weights, pseudo_dice
from autopipe.train.schedule import poly_lr

VALIDATION_BRAINS = 4  # labelled validation subjects whose whole brains give L_cls's validation curve


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
class SegmentationTask:
    """One configuration of the plan on preprocessed patches; with hand_weight > 0 the joint model, whose
    hand_labels (case, 0/1) cover the labelled training and validation cases, and `joint_settings` its head."""

    config: SegmentationConfig
    preprocessed: Path
    transpose_forward: tuple[int, ...]
    in_channels: int
    num_classes: int
    settings: TrainingSettings
    hand_labels: tuple[tuple[str, int], ...] = ()
    hand_weight: float = 0.0
    joint_settings: JointSettings | None = None
    best_key: ClassVar[str] = "best_ema_dice"  # the moving average of the validation pseudo Dice
    higher_is_better: ClassVar[bool] = True

    @property
    def joint(self) -> bool:
        """Whether this task trains the joint segmentation + hand-function model."""
        return self.hand_weight > 0

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    @property
    def seed(self) -> int:
        return self.settings.seed

    def network_kwargs(self) -> dict:
        """The network's constructor arguments, stored in checkpoints so predictions never need the plan."""
        c = self.config
        return {"in_channels": self.in_channels, "num_classes": self.num_classes,
                "features_per_stage": list(c.features_per_stage), "kernel_sizes": [list(k) for k in c.kernel_sizes],
                "strides": [list(s) for s in c.strides], "n_conv_per_stage": c.n_conv_per_stage,
                "deep_supervision": c.deep_supervision, **(self._joint_kwargs() if self.joint else {})}

    def _joint_kwargs(self) -> dict:
        if self.joint_settings is None:
            raise ValueError("a joint task (hand_weight > 0) needs joint_settings")
        return {"hand_head": self.joint_settings.geometry(), "patch_size": list(self.config.patch_size),
                "transpose_forward": list(self.transpose_forward)}

    def build(self) -> nn.Module:
        if self.joint:
            return build_joint_network(self.config, self.in_channels, self.num_classes,
                                       self._joint_kwargs()["hand_head"], self.transpose_forward)
        return build_network(self.config, self.in_channels, self.num_classes)

    def optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(self.settings.optimizer, network.parameters(), self.settings)

    def mixed_precision(self, device: torch.device) -> bool:
        return device.type == "cuda" and self.settings.mixed_precision

    def runner(self, job: Job, network: nn.Module, device: torch.device, ranks: Ranks,
               resumed: bool) -> SegmentationRun:
        return SegmentationRun(self, job, network, device, ranks, resumed)

    def score(self, record: dict) -> float:
        return record["ema_pseudo_dice"]

    def describe_run(self, job: Job, device: torch.device, ranks: Ranks) -> str:
        return (f"training {job.name} fold {job.fold} on {device} ({ranks.world_size} process"
                f"{'es' if ranks.world_size > 1 else ''}): {len(job.train_cases)} train / {len(job.val_cases)} "
                f"validation cases, {self.settings.epochs} epochs x {self.settings.iterations_per_epoch} iterations, "
                f"patch {'x'.join(map(str, self.config.patch_size))}, batch {self.config.batch_size}")

    def describe_epoch(self, job: Job, r: dict, improved: bool) -> str:
        hand = f"; hand-function loss {r['train_hand_loss']:.4f} train, {r['val_hand_loss']:.4f} validation" \
            if "train_hand_loss" in r else ""
        return (f"{job.name} fold {job.fold} epoch {r['epoch'] + 1}/{self.settings.epochs}: train loss "
                f"{r['train_loss']:.4f}, validation loss {r['val_loss']:.4f}, pseudo Dice {r['pseudo_dice']:.3f} "
                f"(average {r['ema_pseudo_dice']:.3f}{', new best' if improved else ''}), lr {r['lr']:.5f}, "
                f"{r['seconds']:.1f} s ({100 * r['data_wait']:.0f}% waiting for data){hand}")

    def describe_end(self, job: Job, history: list[dict]) -> str:
        s = self.settings
        measured = float(np.median([r["seconds"] for r in history])) / s.iterations_per_epoch
        return (f"{job.name} fold {job.fold}: {measured:.3f} s per iteration measured (median epoch over its "
                f"{s.iterations_per_epoch} iterations, data loading and {s.validation_iterations} validation "
                f"batches included), {self.config.seconds_per_iteration:.3f} s planned")

    def header(self, job: Job) -> dict:
        return {"kind": "joint" if self.joint else "segmentation",
                "architecture": "JointUNet" if self.joint else self.config.network, "configuration": job.name,
                "network_kwargs": self.network_kwargs(), "patch_size": list(self.config.patch_size),
                "transpose_forward": list(self.transpose_forward), "settings": asdict(self.settings),
                **({"hand_weight": self.hand_weight} if self.joint else {})}

    def resumable_from(self, state: dict) -> str | None:
        """Why an interrupted run cannot be resumed with these settings (None when it can)."""
        before, now = state["settings"], self.settings
        if (before["epochs"], before["iterations_per_epoch"]) != (now.epochs, now.iterations_per_epoch):
            return (f"the interrupted run had {before['epochs']} epochs x {before['iterations_per_epoch']} "
                    f"iterations, now {now.epochs} x {now.iterations_per_epoch}")
        return None


class SegmentationRun:
    """A segmentation task at work: its patch streams (this rank's), deep-supervision weights and hand term."""

    def __init__(self, task: SegmentationTask, job: Job, network: nn.Module, device: torch.device, ranks: Ranks,
                 resumed: bool = False) -> None:
        self.task, self.job, self.device, self.ranks = task, job, device, ranks
        batch_size = per_rank_batch_size(task.config.batch_size, ranks.world_size)

        def batches(cases: tuple[str, ...], augment: bool, stream: str) -> PatchBatches:
            return PatchBatches(task.preprocessed, cases, task.config.patch_size, batch_size, task.transpose_forward,
                                task.settings.seed, augment=augment, rank=ranks.rank, stream=stream)

        self.training = batches(job.train_cases, True, "train")
        self.validation = batches(job.val_cases or job.train_cases, False, "validation")  # fold "all": its own cases
        self.strides = output_strides(task.config.strides)
        self.weights = deep_supervision_weights(len(self.strides)) if task.config.deep_supervision else (1.0,)
        self.hand = hand_term(task, job, device)
        if self.hand is not None and job.builds_on is not None and not resumed:
            warm_start(network, job.builds_on.checkpoint, self.hand.brains,
                       {c: self.hand.labels[c] for c in self.hand.train_cases}, task.joint_settings, task.seed)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    epoch: int, show: bool) -> dict:
        """One epoch of steps at the epoch's poly learning rate: mean losses over ranks and seconds waiting."""
        settings = self.task.settings
        lr = poly_lr(settings.initial_lr, epoch, settings.epochs, settings.poly_exponent)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, cls_loss, wait = _train_epoch(model, optimizer, scaler, self.training, epoch, self.job, self.task,
                                             self.device, self.strides, self.weights, self.hand, self.ranks, show)
        return {"train_loss": loss, "lr": lr, "data_wait": wait,
                **({"train_hand_loss": cls_loss} if self.hand else {})}

    def validate(self, model: nn.Module, epoch: int, history: list[dict]) -> dict:
        """Validation loss and lesion pseudo Dice, with its moving average (nnU-Net: 0.9 old + 0.1 new)."""
        loss, cls_loss, dice = _validate(model, self.validation, epoch, self.task, self.device, self.strides,
                                          self.weights, self.hand)
        ema = _moving_average(history[-1]["ema_pseudo_dice"] if history else math.nan, dice,
                              self.task.settings.ema_weight)
        return {"val_loss": loss, "pseudo_dice": dice, "ema_pseudo_dice": ema,
                **({"val_hand_loss": cls_loss} if self.hand else {})}


@dataclass(frozen=True)
class HandTask:
    """A joint job's hand-function term: each case's label, r, the training cases' class balance, the labelled
    training subjects whose brains the steps add (every `every`-th step) and the validation subjects'."""

    labels: dict[str, int]
    weight: float
    pos_weight: float
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    every: int
    seed: int
    brains: BrainSource

    def step_cases(self, epoch: int, step: int, steps_per_epoch: int, ranks: Ranks) -> list[str]:
        """The subject whose brain step `step` of `epoch` adds on this rank ([] between brain steps): a pure
        function of (seed, epoch, step, rank), each pass over the subjects in its own seeded order."""
        if step % self.every:
            return []
        per_epoch = -(-steps_per_epoch // self.every)
        k = (epoch * per_epoch + step // self.every) * ranks.world_size + ranks.rank
        passes, position = divmod(k, len(self.train_cases))
        order = np.random.default_rng([self.seed, passes]).permutation(len(self.train_cases))
        return [self.train_cases[order[position]]]

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


def hand_term(task: SegmentationTask, job: Job, device: torch.device) -> HandTask | None:
    """The hand-function term of a joint task (None for a plain one); ValueError when the labelled training cases
    hold one class only. Unlabelled cases train the segmentation alone."""
    if not task.joint:
        return None
    labels = dict(task.hand_labels)
    train = tuple(c for c in job.train_cases if c in labels)
    val = tuple(sorted(c for c in job.val_cases if c in labels)[:VALIDATION_BRAINS])
    return HandTask(labels, task.hand_weight, pos_weight_for([labels[c] for c in train]), train, val,
                    task.joint_settings.brain_every, task.seed, BrainSource(task.preprocessed, device))


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """The planned batch is split over the ranks (nnU-Net's DDP rule), at least one sample each."""
    return max(1, batch_size // world_size)


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                 batches: PatchBatches, epoch: int, job: Job, task: SegmentationTask, device: torch.device,
                 strides: list[tuple[int, ...]], weights: tuple[float, ...], hand: HandTask | None, ranks: Ranks,
                 show: bool) -> tuple[float, float, float]:
    """One epoch of steps; returns the mean loss and hand-function loss (nan without `hand`) over ranks, and the
    seconds spent waiting for batches."""
    settings = task.settings
    model.train()
    losses, hand_losses, waited = [], [], 0.0
    count = settings.iterations_per_epoch
    loader = iter(batch_loader(batches, epoch * count, count, settings.loader_workers))
    with Progress(count, f"{job.name} fold {job.fold} epoch {epoch + 1}/{settings.epochs}", enabled=show) as bar:
        for step in range(count):
            tick = time.monotonic()
            batch = next(loader)
            waited += time.monotonic() - tick
            data = batch["data"].to(device, non_blocking=True)
            target = batch["target"].to(device, non_blocking=True)
            cases = hand.step_cases(epoch, step, count, ranks) if hand is not None else []
            brains = [hand.brains(c) for c in cases] if hand is not None else None
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=scaler is not None):
                outputs, hand_logits = _forward(model, data, brains)
                loss = deep_supervision_loss(outputs, target, strides, weights) + _unweighted(outputs, weights)
                if hand is not None:
                    loss, cls, labelled = hand.loss(loss, hand_logits, cases)
                    if labelled:
                        hand_losses.append(cls.detach())
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
    hand_mean = mean_across_ranks(hand_losses, device) if hand is not None and hand_losses else math.nan
    return mean_across_ranks(losses, device), hand_mean, waited


@torch.no_grad()
def _validate(model: torch.nn.Module, batches: PatchBatches, epoch: int, task: SegmentationTask, device: torch.device,
              strides: list[tuple[int, ...]], weights: tuple[float, ...],
              hand: HandTask | None) -> tuple[float, float, float]:
    """Loss and lesion pseudo Dice on validation patches (every rank sees the same number of batches), and L_cls
    of the hand task's validation brains (nan without them)."""
    model.eval()
    count = task.settings.validation_iterations
    sums = torch.zeros(3, device=device)  # loss, hand-function loss x its brains, brains (the same on every rank)
    counts = torch.zeros(3, task.num_classes - 1, device=device)
    for batch in batch_loader(batches, epoch * count, count, 0):
        data, target = batch["data"].to(device), batch["target"].to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda" and task.settings.mixed_precision):
            outputs, _ = _forward(model, data, None)
            loss = deep_supervision_loss(outputs, target, strides, weights).float()
            sums[0] += loss.float()
        full = outputs[0] if isinstance(outputs, list | tuple) else outputs
        counts += torch.stack(confusion_counts(full.float(), target)).to(counts)
    if hand is not None and hand.val_cases:
        network = model.module if isinstance(model, DistributedDataParallel) else model
        with torch.autocast(device.type, enabled=device.type == "cuda" and task.settings.mixed_precision):
            logits = network.brain_logits([hand.brains(c) for c in hand.val_cases])
        labels = torch.tensor([float(hand.labels[c]) for c in hand.val_cases], device=device)
        sums[1:] += torch.stack([hand_loss(logits, labels, hand.pos_weight) * len(labels),
                                 torch.tensor(float(len(labels)), device=device)])
    total = sum_across_ranks(torch.cat([sums, torch.tensor([float(count)], device=device), counts.flatten()]))
    tp, fp, fn = total[4:].reshape(3, -1)
    dice = float(np.nanmean(pseudo_dice(tp, fp, fn))) if (2 * tp + fp + fn).sum() > 0 else math.nan
    return float(total[0] / total[3]), float(total[1] / total[2]) if total[2] > 0 else math.nan, dice


def _forward(model: torch.nn.Module, data: torch.Tensor,
             brains: list[Brain] | None) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor | None]:
    """(segmentation outputs, the brains' hand-function logits, or None without `brains`); one pass through
    model.__call__, so that DDP sees it (a joint model between brain steps gets brains=[])."""
    return model(data, brains=brains) if brains is not None else (model(data), None)


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


def default_loader_workers(device_type: str, cores: int) -> int:
    """Batch-preparing processes: on a GPU all spare cores (up to 8) so the GPU never waits; on a CPU with few
    cores none, because augmentation and the network compete for the same cores (benchmarks/train_speed.py)."""
    if device_type != "cpu":
        return max(1, min(8, cores - 1))
    return 0 if cores <= 4 else min(4, cores // 4)
