"""`autopipe train FOLD`, reconstruction part: the models the plan's approaches need, on the fold's k-space.

    results/DATASET/reconstruction/MODEL/fold_K/   checkpoints, progress.png, progress.json, training.log
    results/DATASET/reconstruction/cs/fold_K/cs.json   the compressed-sensing weight chosen on training slices

Only cases with a prepared k-space file take part (a cohort may have k-space for some cases only). The
models are trained in dependency order: cirim before the segmentation that learns on its output.
"""

from __future__ import annotations

import logging

import torch

from autopipe.distributed import Ranks, barrier
from autopipe.errors import AutopipeError
from autopipe.layout import CS, kspace_dir, slice_model_dir
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint
from autopipe.models.slice_models import MODEL_NAMES, WARM_STARTED, model_kwargs, planned_models
from autopipe.paths import Workspace
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.kspace_slices import cases_with_kspace
from autopipe.train.fold import log_file
from autopipe.train.slice_trainer import SliceJob, SliceSettings, train_slice_model

log = logging.getLogger(__name__)



def kspace_cases(fold: Fold) -> tuple[list[str], list[str]]:
    """The fold's training and validation cases that have prepared k-space."""
    folder = kspace_dir(fold.preprocessed)
    return cases_with_kspace(folder, fold.train_cases), cases_with_kspace(folder, fold.val_cases)


def slice_jobs(fold: Fold, workspace: Workspace, models: list[str] | None = None, *, epochs: int | None = None,
               seed: int = 12345) -> list[SliceJob]:
    """One SliceJob per model (the planned ones unless named), in training order."""
    planned = planned_models(fold.plans)
    names = planned if models is None else models
    unknown = [n for n in names if n not in planned]
    if unknown:
        raise AutopipeError(f"model(s) {', '.join(unknown)} are not in the plan",
                            fix=f"choose from {', '.join(planned) or 'none: the cohort has no k-space'}")
    if not names:
        return []
    train_cases, val_cases = kspace_cases(fold)
    if not train_cases:
        raise AutopipeError(f"no training case of fold {fold.name} has prepared k-space",
                            where=str(kspace_dir(fold.preprocessed)), fix="run `autopipe preprocess` first")
    plans = fold.plans
    jobs = []
    for name in [n for n in MODEL_NAMES if n in names]:
        settings = SliceSettings(
            epochs=epochs or (plans.reconstruction.epochs if name == "cirim" else plans.multitask.epochs),
            learning_rate=plans.reconstruction.learning_rate, seed=seed,
            **({"segmentation_weight": plans.multitask.segmentation_weight,
                "reconstruction_weight": plans.multitask.reconstruction_weight} if plans.multitask else {}))
        cirim = checkpoint_path(slice_model_dir(workspace, fold.spec.name, "cirim", fold.name), "final")
        jobs.append(SliceJob(
            name=name, fold=fold.name, model_kwargs=model_kwargs(name, plans), kspace_dir=kspace_dir(fold.preprocessed),
            train_cases=tuple(train_cases), val_cases=tuple(val_cases),
            out_dir=slice_model_dir(workspace, fold.spec.name, name, fold.name), plan_digest=fold.digest,
            settings=settings, reconstruction_checkpoint=cirim if depends_on_cirim(name, plans) else None))
    return jobs


def depends_on_cirim(name: str, plans) -> bool:
    """segmentation_on_cirim learns on the trained CIRIM's images; the multitask models start from its weights."""
    return name == "segmentation_on_cirim" or (name in WARM_STARTED and plans.multitask.warm_start)


def slice_training_state(job: SliceJob, resume: bool, force: bool) -> str:
    """'fresh', 'resume' or 'done', or an AutopipeError when the wish and the files disagree."""
    final, latest = checkpoint_path(job.out_dir, "final"), checkpoint_path(job.out_dir, "latest")
    if force:
        return "fresh"
    upstream = job.reconstruction_checkpoint
    if final.is_file() and upstream is not None and upstream.stat().st_mtime > final.stat().st_mtime:
        log.info("%s fold %s was built on an older cirim; training it again on the new one", job.name, job.fold)
        return "fresh"
    if final.is_file():
        return "done"
    if not latest.is_file():
        return "fresh"
    if not resume:
        raise AutopipeError(f"{job.name} fold {job.fold} has an interrupted run", where=str(latest),
                            fix="add --continue to resume it where it stopped, or --force to start over")
    state = load_checkpoint(latest)
    if state["network_kwargs"] != job.model_kwargs or state.get("plan_digest") != job.plan_digest:
        raise AutopipeError(f"the interrupted {job.name} run was made with another plan or preprocessing",
                            where=str(latest), fix="use --force to start over with the current plan")
    if state["settings"]["epochs"] != job.settings.epochs:
        raise AutopipeError(f"the interrupted run had {state['settings']['epochs']} epochs, now {job.settings.epochs}",
                            where=str(latest), fix="resume with the same --epochs, or use --force to start over")
    return "resume"


def train_slice_fold(jobs: list[SliceJob], device: torch.device, ranks: Ranks, *, resume: bool = False,
                     force: bool = False, progress: bool = True) -> list[dict]:
    """Train every job not finished yet; one summary per job. A model that builds on cirim waits for it."""
    summaries = []
    for job in jobs:
        if job.reconstruction_checkpoint is not None and not job.reconstruction_checkpoint.is_file():
            raise AutopipeError(f"{job.name} builds on the trained cirim, and cirim fold {job.fold} is not trained",
                                where=str(job.reconstruction_checkpoint),
                                fix="train it first: `autopipe train FOLD -c cirim`")
        state = slice_training_state(job, resume, force)
        if state == "done":
            log.info("%s fold %s is already trained (%s); --force trains it again", job.name, job.fold,
                     checkpoint_path(job.out_dir, "final"))
            summaries.append({"model": job.name, "state": "done"})
            continue
        if state == "fresh" and ranks.is_main and job.out_dir.is_dir():
            for path in job.out_dir.glob("checkpoint_*.pt"):
                path.unlink()
        barrier()
        with log_file(job.out_dir / "training.log", ranks.is_main):
            log.info("training %s fold %s on %s: %d train / %d validation cases with k-space, %d epochs, lr %g",
                     job.name, job.fold, device, len(job.train_cases), len(job.val_cases), job.settings.epochs,
                     job.settings.learning_rate)
            result = train_slice_model(job, device, ranks, resume=state == "resume", progress=progress)
        summaries.append({"model": job.name, "state": "trained",
                          **{k: v for k, v in result.items() if k != "history"}})
    return summaries


def tune_cs_weight(fold: Fold, workspace: Workspace, *, force: bool = False, progress: bool = True) -> dict | None:
    """Choose the compressed-sensing weight on the fold's training slices, once (again with force)."""
    from autopipe.files import read_json
    from autopipe.layout import CS_FILE
    from autopipe.train.cs_weight import choose_cs_weight

    recon = fold.plans.reconstruction
    if recon is None:
        return None
    out_dir = slice_model_dir(workspace, fold.spec.name, CS, fold.name)
    if (out_dir / CS_FILE).is_file() and not force:
        return read_json(out_dir / CS_FILE)
    train_cases, _ = kspace_cases(fold)
    return choose_cs_weight(kspace_dir(fold.preprocessed), train_cases, recon.cs_weights, recon.cs_iterations,
                            out_dir, progress=progress)
