"""The one training loop: seed -> network -> resume -> epochs of (train, validate, checkpoint, curves) -> final.

Every model autopipe trains with torch is a Job: where its outputs go, which cases, and a task that knows the
rest (autopipe.train.segmentation_task for the U-Nets and the joint U-Net, autopipe.train.slice_task for the
k-space models). The loop owns what they share, once: the seed, resuming, DDP, the epochs, the best / latest /
final checkpoints, the curves and the barriers. Every epoch ends in a checkpoint holding the network, optimizer
and (on CUDA) gradient-scaler state, and every task's batches are pure functions of (seed, epoch, rank), so a
run resumed with `--continue` continues exactly where it stopped: on a CPU the weights equal those of an
uninterrupted run.

    OUT/checkpoint_latest.pt   every epoch while training; removed once finished
    OUT/checkpoint_best.pt     the epoch with the best validation score (the task says which)
    OUT/checkpoint_final.pt    the last epoch: its presence means "trained"
    OUT/progress.json, progress.png, training.log
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autopipe.distributed import Ranks, barrier
from autopipe.errors import AutopipeError
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint, save_final
from autopipe.train.curves import write_progress

log = logging.getLogger(__name__)


class Runner(Protocol):
    """A task at work on one rank: its data streams and whatever else an epoch needs."""

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    epoch: int, show: bool) -> dict:
        """One epoch of steps; the epoch's record so far ("train_loss", "lr", optionally "data_wait" seconds)."""

    def validate(self, model: nn.Module, epoch: int, history: list[dict]) -> dict:
        """The rest of the epoch's record ("val_loss", ...): the same on every rank."""


class Task(Protocol):
    """What one kind of model brings to the loop: its network, optimizer, runner and checkpoint header."""

    best_key: str  # the checkpoint key of the best validation score so far
    higher_is_better: bool

    @property
    def epochs(self) -> int:
        """How many epochs the run has."""

    @property
    def seed(self) -> int:
        """Seeds the network's initialization and every batch."""

    def build(self) -> nn.Module:
        """The untrained network."""

    def optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over the network's parameters."""

    def mixed_precision(self, device: torch.device) -> bool:
        """Whether to train with a gradient scaler and autocast on this device."""

    def runner(self, job: Job, network: nn.Module, device: torch.device, ranks: Ranks, resumed: bool) -> Runner:
        """This rank's runner, once the network is built (and resumed, when `resumed`)."""

    def score(self, record: dict) -> float:
        """The epoch's validation score that picks the best checkpoint (NaN never improves)."""

    def describe_run(self, job: Job, device: torch.device, ranks: Ranks) -> str:
        """The line that opens the run's log."""

    def describe_epoch(self, job: Job, record: dict, improved: bool) -> str:
        """The epoch's line in the log."""

    def network_kwargs(self) -> dict:
        """The network's constructor arguments (checkpoints keep them: the model is rebuilt from them alone)."""

    def describe_end(self, job: Job, history: list[dict]) -> str:
        """The line that closes the run's log: the measured time per step against the plan's estimate."""

    def header(self, job: Job) -> dict:
        """What a checkpoint says about the model: kind, architecture, network_kwargs, settings, ..."""

    def resumable_from(self, state: dict) -> str | None:
        """Why an interrupted run (its latest checkpoint) cannot be resumed with this task; None when it can."""


@dataclass(frozen=True)
class Upstream:
    """A trained model another one starts from or learns on, and its final checkpoint."""

    model: str
    checkpoint: Path


@dataclass(frozen=True)
class Job:
    """One model to train on one fold: what it is called, where it goes, which cases, and its task.

    `builds_on` names a trained model this one starts from or learns on (a sequential model's cirim): the model
    waits for it, and is trained again when its checkpoint is newer than the model's own final one.
    """

    name: str
    fold: str
    out_dir: Path
    plan_digest: str
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    task: Task
    builds_on: Upstream | None = None


def training_state(job: Job, resume: bool, force: bool) -> str:
    """'fresh', 'resume' or 'done' for this job, or an AutopipeError when the wish and the files disagree."""
    final, latest = checkpoint_path(job.out_dir, "final"), checkpoint_path(job.out_dir, "latest")
    if force:
        return "fresh"
    upstream = job.builds_on
    if final.is_file() and upstream is not None and upstream.checkpoint.is_file() \
            and upstream.checkpoint.stat().st_mtime > final.stat().st_mtime:
        log.info("%s fold %s was built on an older %s; training it again on the new one", job.name, job.fold,
                 upstream.model)
        return "fresh"
    if final.is_file():
        return "done"
    if not latest.is_file():
        return "fresh"
    if not resume:
        raise AutopipeError(f"{job.name} fold {job.fold} has an interrupted run", where=str(latest),
                            fix="add --continue to resume it where it stopped, or --force to start over")
    state = load_checkpoint(latest)
    if state["network_kwargs"] != job.task.network_kwargs() or \
            state.get("plan_digest") != job.plan_digest:
        raise AutopipeError(f"the interrupted {job.name} run was made with another plan or preprocessing",
                            where=str(latest), fix="use --force to start over with the current plan")
    different = job.task.resumable_from(state)
    if different:
        raise AutopipeError(different, where=str(latest),
                            fix="resume with the same --epochs/--iterations, or use --force to start over")
    return "resume"


def train_jobs(jobs: list[Job], device: torch.device, ranks: Ranks, *, resume: bool = False, force: bool = False,
               progress: bool = True) -> list[dict]:
    """Train every job that is not trained yet (resuming or restarting as asked), in order; one summary per job.

    A job that builds on another's checkpoint waits for it. The main rank also logs into each job's training.log
    (appended across resumes).
    """
    summaries = []
    for job in jobs:
        upstream = job.builds_on
        if upstream is not None and not upstream.checkpoint.is_file():
            raise AutopipeError(f"{job.name} builds on the trained {upstream.model}, and {upstream.model} fold "
                                f"{job.fold} is not trained", where=str(upstream.checkpoint),
                                fix=f"train it first: `autopipe train FOLD -c {upstream.model}`")
        state = training_state(job, resume, force)
        if state == "done":
            if ranks.is_main:  # a run killed between writing its final checkpoint and removing the latest one
                checkpoint_path(job.out_dir, "latest").unlink(missing_ok=True)
            log.info("%s fold %s is already trained (%s); --force trains it again", job.name, job.fold,
                     checkpoint_path(job.out_dir, "final"))
            summaries.append({"model": job.name, "state": "done"})
            continue
        if state == "fresh" and ranks.is_main and job.out_dir.is_dir():
            shutil.rmtree(job.out_dir)  # an earlier run's checkpoints, curves and validation
        barrier()
        with log_file(job.out_dir / "training.log", ranks.is_main):
            log.info("%s", job.task.describe_run(job, device, ranks))
            result = fit(job, device, ranks, resume=state == "resume", progress=progress)
        summaries.append({"model": job.name, "state": "trained",
                          **{k: v for k, v in result.items() if k != "history"}})
    return summaries


def fit(job: Job, device: torch.device, ranks: Ranks | None = None, resume: bool = False,
        progress: bool = True) -> dict:
    """Train `job` (resuming from its latest checkpoint); returns {"epochs", best_key, "seconds", "history"}."""
    task, ranks = job.task, ranks or Ranks()
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(task.seed)
    network = task.build().to(device)
    optimizer = task.optimizer(network)
    scaler = torch.amp.GradScaler("cuda") if task.mixed_precision(device) else None
    history: list[dict] = []
    best = -math.inf if task.higher_is_better else math.inf
    start_epoch = 0
    if resume:
        state = load_checkpoint(checkpoint_path(job.out_dir, "latest"), map_location=device)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best, start_epoch = list(state["history"]), float(state[task.best_key]), int(state["epoch"])
        log.info("resuming %s fold %s after epoch %d of %d", job.name, job.fold, start_epoch, task.epochs)
    model = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None) \
        if ranks.distributed else network
    runner = task.runner(job, network, device, ranks, resumed=resume)
    started = time.monotonic()
    for epoch in range(start_epoch, task.epochs):
        tick = time.monotonic()
        record = {"epoch": epoch, **runner.train_epoch(model, optimizer, scaler, epoch, progress and ranks.is_main)}
        record.update(runner.validate(model, epoch, history))
        seconds = time.monotonic() - tick
        record["seconds"] = round(seconds, 3)
        if "data_wait" in record:  # seconds waiting for batches -> share of the epoch
            record["data_wait"] = round(record["data_wait"] / seconds, 4)
        history.append(record)
        score = task.score(record)
        improved = not math.isnan(score) and (score > best if task.higher_is_better else score < best)
        best = score if improved else best
        if ranks.is_main:
            log.info("%s", task.describe_epoch(job, record, improved))
            state = _state(job, network, optimizer, scaler, history, best, epoch + 1)
            if improved:
                save_checkpoint(checkpoint_path(job.out_dir, "best"), state)
            save_checkpoint(checkpoint_path(job.out_dir, "latest"), state)
            write_progress(history, job.out_dir, f"{job.name}, fold {job.fold}")
        barrier()
    if ranks.is_main:
        if start_epoch >= task.epochs:
            log.info("%s fold %s: all %d epochs were already done", job.name, job.fold, task.epochs)
        save_final(job.out_dir, _state(job, network, optimizer, scaler, history, best, task.epochs))
        write_progress(history, job.out_dir, f"{job.name}, fold {job.fold}")
        if history:
            log.info("%s", task.describe_end(job, history))
    barrier()
    return {"epochs": task.epochs, task.best_key: best, "seconds": round(time.monotonic() - started, 1),
            "history": history}


def _state(job: Job, network: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
           history: list[dict], best: float, epoch: int) -> dict:
    """A checkpoint: the task's header (kind, architecture, network_kwargs, ...), then the loop's state."""
    return {**job.task.header(job), "fold": job.fold, "epoch": epoch, "plan_digest": job.plan_digest,
            "seed": job.task.seed, "network": network.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "history": history,
            job.task.best_key: best}


@contextmanager
def log_file(path: Path, enabled: bool) -> Iterator[None]:
    """Copy autopipe's log messages into `path` (appending) while the block runs."""
    if not enabled:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("autopipe")
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
