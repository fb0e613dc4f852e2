"""`autopipe train FOLD`: which cases, which data, which configurations, and where the results go.

    results/DATASET/CONFIGURATION/fold_K/   (fold_all for FOLD=all)
        checkpoint_best.pt, checkpoint_final.pt (checkpoint_latest.pt while training)
        progress.png, progress.json, training.log
        validation/   predictions of the held-out cases in their native space (autopipe.predict.validation)
            template_space/CASE.nii.gz   the same on the template grid, for the hand-function features

Nothing is trained on data that is not finished preprocessing with the current plan, and a finished or
interrupted run is never overwritten without --force.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from autopipe.distributed import Ranks, barrier
from autopipe.errors import AutopipeError
from autopipe.layout import fold_dir
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint
from autopipe.paths import Workspace
from autopipe.plan.configs import INITIAL_LR
from autopipe.plan.planner import NUM_CLASSES
from autopipe.preprocess.folds import Fold
from autopipe.train.trainer import TrainingJob, TrainingSettings, network_kwargs, train

log = logging.getLogger(__name__)


def training_jobs(fold: Fold, workspace: Workspace, configurations: list[str] | None, *, epochs: int | None = None,
                  iterations: int | None = None, loader_workers: int = 0, seed: int = 12345,
                  optimizer: str | None = None) -> list[TrainingJob]:
    """One TrainingJob per configuration the plan instantiated (or those named), with CLI overrides applied."""
    planned = fold.plans.configurations
    names = configurations or sorted(planned, key=lambda n: n != "3d_fullres")  # 3d_fullres first
    unknown = [n for n in names if n not in planned]
    if unknown:
        raise AutopipeError(f"configuration(s) {', '.join(unknown)} are not in the plan",
                            fix=f"choose from {', '.join(planned)}")
    for value, flag in ((epochs, "--epochs"), (iterations, "--iterations")):
        if value is not None and value < 1:
            raise AutopipeError(f"{flag} must be at least 1, got {value}")
    jobs = []
    for name in names:
        config = planned[name]
        lr = config.initial_lr if optimizer in (None, config.optimizer) else INITIAL_LR[optimizer]
        settings = TrainingSettings(epochs=epochs or config.epochs,
                                    iterations_per_epoch=iterations or config.iterations_per_epoch,
                                    optimizer=optimizer or config.optimizer, initial_lr=lr,
                                    loader_workers=loader_workers, seed=seed)
        settings = replace(settings, validation_iterations=max(1, min(settings.validation_iterations,
                                                                       settings.iterations_per_epoch // 5)))
        jobs.append(TrainingJob(
            name=name, fold=fold.name, config=config, preprocessed=fold.preprocessed, train_cases=fold.train_cases,
            val_cases=fold.val_cases, transpose_forward=tuple(fold.plans.transpose_forward),
            in_channels=fold.plans.preprocessing.num_channels, num_classes=NUM_CLASSES,
            out_dir=fold_dir(workspace, fold.spec.name, name, fold.name), plan_digest=fold.digest, settings=settings))
    return jobs


def training_state(job: TrainingJob, resume: bool, force: bool) -> str:
    """'fresh', 'resume' or 'done' for this job, or an AutopipeError when the wish and the files disagree."""
    final, latest = checkpoint_path(job.out_dir, "final"), checkpoint_path(job.out_dir, "latest")
    if force:
        return "fresh"
    if final.is_file():
        return "done"
    if latest.is_file():
        if not resume:
            raise AutopipeError(f"{job.name} fold {job.fold} has an interrupted run", where=str(latest),
                                fix="add --continue to resume it where it stopped, or --force to start over")
        state = load_checkpoint(latest)
        if state["network_kwargs"] != network_kwargs(job) or state.get("plan_digest") != job.plan_digest:
            raise AutopipeError(f"the interrupted {job.name} run was made with another plan or preprocessing",
                                where=str(latest), fix="use --force to start over with the current plan")
        if state["settings"]["epochs"] != job.settings.epochs or \
                state["settings"]["iterations_per_epoch"] != job.settings.iterations_per_epoch:
            raise AutopipeError(
                f"the interrupted run had {state['settings']['epochs']} epochs x "
                f"{state['settings']['iterations_per_epoch']} iterations, now {job.settings.epochs} x "
                f"{job.settings.iterations_per_epoch}", where=str(latest),
                fix="resume with the same --epochs/--iterations, or use --force to start over")
        return "resume"
    return "fresh"


def clear_outputs(job: TrainingJob) -> None:
    """Remove an earlier run's checkpoints, curves and validation (for --force)."""
    if job.out_dir.is_dir():
        shutil.rmtree(job.out_dir)


def train_fold(jobs: list[TrainingJob], device: torch.device, ranks: Ranks, *, resume: bool = False,
               force: bool = False, progress: bool = True) -> list[dict]:
    """Train every job that is not finished yet (resuming or restarting as asked); one summary per job.

    The main rank also logs into each job's training.log (appended across resumes).
    """
    summaries = []
    for job in jobs:
        state = training_state(job, resume, force)
        if state == "done":
            log.info("%s fold %s is already trained (%s); --force trains it again", job.name, job.fold,
                     checkpoint_path(job.out_dir, "final"))
            summaries.append({"configuration": job.name, "state": "done"})
            continue
        if force and ranks.is_main:
            clear_outputs(job)
        barrier()
        with log_file(job.out_dir / "training.log", ranks.is_main):
            log.info("training %s fold %s on %s (%d process%s): %d train / %d validation cases, %d epochs x %d "
                     "iterations, patch %s, batch %d", job.name, job.fold, device, ranks.world_size,
                     "es" if ranks.world_size > 1 else "", len(job.train_cases), len(job.val_cases),
                     job.settings.epochs, job.settings.iterations_per_epoch,
                     "x".join(map(str, job.config.patch_size)), job.config.batch_size)
            result = train(job, device, ranks, resume=state == "resume", progress=progress)
        summaries.append({"configuration": job.name, "state": "trained", **{k: v for k, v in result.items()
                                                                              if k != "history"}})
    return summaries


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
