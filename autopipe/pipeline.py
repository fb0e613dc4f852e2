"""The commands that chain stages: what `autopipe train`, `predict` and `evaluate` run once the CLI has parsed
their arguments, checked the cohort and taken the output lock, and what the demo calls the same way.

    train_fold       train (autopipe.train) every model of one fold, predict its held-out cases (autopipe.predict)
                     and score them (autopipe.evaluate); fit the hand-function predictors whose folds are ready;
                     train the k-space models and compare the reconstruction + segmentation approaches
    predict_cases    new scans (and k-space files) through the trained folds
    evaluate_cohort  cross-validation summaries, the configuration predict uses (autopipe.evaluate.best_configuration),
                     the approach comparison and the hand-function report

This is the one module that reaches into several stages; the stages themselves only look backwards. Tables go
to `say` (print by default), progress and messages to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from autopipe import distributed
from autopipe.cohort.dataset import load_dataset
from autopipe.distributed import Ranks
from autopipe.errors import AutopipeError
from autopipe.evaluate.approach_comparison import compare_crossvalidation, compare_fold, format_comparison, summarize
from autopipe.evaluate.best_configuration import choose_best_configuration, format_decision
from autopipe.evaluate.crossval import evaluate_crossvalidation, evaluate_fold
from autopipe.evaluate.hand_function import evaluate_hand_function
from autopipe.executor import Workers
from autopipe.layout import CS, ENSEMBLE, best_configuration, hand_dir
from autopipe.models.slice_models import planned_models
from autopipe.paths import Workspace
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.predict.hand_inference import predict_joint_validation
from autopipe.predict.kspace_cases import predict_kspace_folder
from autopipe.predict.new_cases import predict_folder
from autopipe.predict.validation import predict_validation
from autopipe.preprocess.folds import Fold, load_fold
from autopipe.train.cs_weight import tune_cs_weight
from autopipe.train.fit import Job, train_jobs
from autopipe.train.hand_fold import labels_of, train_ready_predictors
from autopipe.train.jobs import joint_job, planned_joint_name, slice_jobs, training_jobs

log = logging.getLogger(__name__)

HAND_FUNCTION = "hand_function"  # -c name of the logistic regressions


@dataclass(frozen=True)
class TrainOptions:
    """What `autopipe train` was asked for (None: the plan's value or every planned model)."""

    models: list[str] | None = None
    epochs: int | None = None
    iterations: int | None = None
    resume: bool = False
    force: bool = False
    seed: int = 12345
    optimizer: str | None = None
    loader_workers: int = 0
    validate: bool = True
    mirror: bool = True
    progress: bool = True


def train_fold(root: Path, workspace: Workspace, fold_name: str, options: TrainOptions, device: torch.device,
               ranks: Ranks, say: Callable[[str], None] = print) -> None:
    """Everything `autopipe train FOLD` does for the cohort at `root`, on this rank."""
    fold = load_fold(root, workspace, fold_name)
    configurations, slice_models, hand_models = split_model_names(fold, options.models)
    jobs = training_jobs(fold, workspace, configurations, epochs=options.epochs, iterations=options.iterations,
                         loader_workers=options.loader_workers, seed=options.seed, optimizer=options.optimizer) \
        if configurations != [] else []
    train_jobs(jobs, device, ranks, resume=options.resume, force=options.force, progress=options.progress)
    validate_segmentation(fold, jobs, options, device, ranks, say)
    train_hand_function(fold, root, workspace, hand_models, options, device, ranks, say)
    train_reconstruction(fold, workspace, slice_models, options, device, ranks, say)


def split_model_names(fold: Fold, names: list[str] | None) -> tuple[list[str] | None, list[str] | None,
                                                                     list[str] | None]:
    """-c NAMES -> (segmentation configurations, reconstruction models incl. 'cs', hand-function models:
    'hand_function' for the logistic regression and the joint U-Net's name); None means every planned."""
    if names is None:
        return None, None, None
    plans = fold.plans
    slice_names = [*planned_models(plans), *([CS] if plans.reconstruction else [])]
    joint = planned_joint_name(plans)
    hand_names = [*([HAND_FUNCTION] if plans.hand_function else []), *([joint] if joint else [])]
    unknown = [n for n in names if n not in plans.configurations and n not in slice_names and n not in hand_names]
    if unknown:
        raise AutopipeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the plan",
                            fix=f"choose from {', '.join([*plans.configurations, *slice_names, *hand_names])}")
    return ([n for n in names if n in plans.configurations], [n for n in names if n in slice_names],
            [n for n in names if n in hand_names])


def validate_segmentation(fold: Fold, jobs: list[Job], options: TrainOptions, device: torch.device, ranks: Ranks,
                          say: Callable[[str], None]) -> None:
    """Predict and score the fold's held-out cases with every segmentation configuration just trained."""
    if not (options.validate and fold.val_cases):
        return
    for job in jobs:
        folder = predict_validation(fold.spec, job.out_dir, fold.preprocessed, list(job.val_cases), device,
                                    ranks, mirror=options.mirror, progress=options.progress)
        if ranks.is_main:
            result = evaluate_fold(fold.spec, folder, list(job.val_cases), fold.plans.preprocessing.lesion_labels,
                                   progress=options.progress)
            say(f"\n{job.name} fold {fold.name}: validation of {len(job.val_cases)} held-out case(s) in their "
                f"native space ({folder})")
            say(result["table"])


def train_hand_function(fold: Fold, root: Path, workspace: Workspace, models: list[str] | None,
                        options: TrainOptions, device: torch.device, ranks: Ranks, say: Callable[[str], None]) -> None:
    """The joint segmentation + hand-function U-Net of this fold, then the logistic regressions of every fold
    whose out-of-fold segmentations are now complete."""
    plans = fold.plans
    if plans.hand_function is None or fold.name == "all" or models == []:
        return
    if plans.joint and (models is None or planned_joint_name(plans) in models):
        train_joint(fold, workspace, plans.joint.hand_function_weight, options, device, ranks, say)
    if ranks.is_main and (models is None or HAND_FUNCTION in models):
        folds = [str(i) for i in range(len(load_splits(workspace.plans_dir(fold.spec.name) / "splits_final.json")))]
        for predictor in train_ready_predictors(root, workspace, folds, force=options.force,
                                                progress=options.progress):
            say(f"hand function fold {predictor['fold']}: logistic regression on {len(predictor['training_cases'])} "
                f"subjects' lesion features -> {hand_dir(workspace, fold.spec.name)}")


def train_joint(fold: Fold, workspace: Workspace, r: float, options: TrainOptions, device: torch.device,
                ranks: Ranks, say: Callable[[str], None]) -> None:
    """Train (or finish) the joint U-Net with weight r, then score its held-out subjects' hand function."""
    labels = labels_of(fold)
    job = joint_job(fold, workspace, {c: v for c, v in labels.items() if v is not None}, r,
                    fold.plans.joint.hand_function_weight, fold.plans.joint.configuration, epochs=options.epochs,
                    iterations=options.iterations, loader_workers=options.loader_workers, seed=options.seed,
                    optimizer=options.optimizer)
    train_jobs([job], device, ranks, resume=options.resume, force=options.force, progress=options.progress)
    validate_segmentation(fold, [job], options, device, ranks, say)
    if ranks.is_main and fold.val_cases:
        result = predict_joint_validation(job.out_dir, r, fold, labels, device, progress=options.progress)
        scored = [v for v in result["cases"].values() if v["label"] is not None]
        correct = sum((v["probability"] >= 0.5) == bool(v["label"]) for v in scored)
        say(f"{job.name} fold {fold.name}: hand function of {len(scored)} held-out subject(s), {correct} right at "
            f"p >= 0.5 (r = {r:g}); `autopipe evaluate` pools the folds")


def train_reconstruction(fold: Fold, workspace: Workspace, models: list[str] | None, options: TrainOptions,
                         device: torch.device, ranks: Ranks, say: Callable[[str], None]) -> None:
    """The compressed-sensing weight and the k-space models of the plan's approaches, then their comparison."""
    if fold.plans.reconstruction is None or models == []:
        return
    if ranks.is_main and (models is None or CS in models):
        tune_cs_weight(fold, workspace, force=options.force, progress=options.progress)
    distributed.barrier()
    jobs = slice_jobs(fold, workspace, None if models is None else [m for m in models if m != CS],
                      epochs=options.epochs, seed=options.seed)
    train_jobs(jobs, device, ranks, resume=options.resume, force=options.force, progress=options.progress)
    if options.validate and fold.val_cases and ranks.is_main:
        result = compare_fold(fold, workspace, device, progress=options.progress)
        say(f"\nreconstruction + segmentation, fold {fold.name}: {len(result['cases'])} held-out case(s)")
        say(format_comparison(summarize([result])))


@dataclass(frozen=True)
class PredictOptions:
    """What `autopipe predict` was asked for."""

    input: Path
    output: Path
    configuration: str | None = None
    folds: list[str] | None = None
    approach: str | None = None
    probabilities: bool = False
    mirror: bool = True
    accept_implausible: bool = False
    workers: Workers = 1  # local processes or a Dask cluster, for preprocessing the new cases
    progress: bool = True
    bids: Path | None = None
    dicom_seg: bool = False


def predict_cases(root: Path, workspace: Workspace, options: PredictOptions, device: torch.device,
                  say: Callable[[str], None] = print) -> list[str]:
    """Scans (CASE_0000.nii.gz, ...) and k-space files (CASE.h5) in options.input through the trained folds;
    returns the cases that failed (each already reported with its reason)."""
    has_kspace = options.input.is_dir() and any(options.input.glob("*.h5"))
    has_images = options.input.is_dir() and any(options.input.glob("*_0000.*"))
    failed: list[str] = []
    if has_images or not has_kspace:
        result = predict_folder(options.input, options.output, root, workspace, configuration=options.configuration,
                                folds=options.folds, device=device, mirror=options.mirror,
                                probabilities=options.probabilities, workers=options.workers,
                                progress=options.progress, accept_implausible=options.accept_implausible,
                                bids_dir=options.bids, dicom_seg=options.dicom_seg)
        masks = [p for p in result.written if "probability" not in p.name and p.suffix != ".csv"]
        say(f"{len(masks)} case(s) predicted with {result.configuration} (folds {', '.join(result.folds)}) "
            f"-> {options.output}" + (f"; lesion count and volume per case in {options.output / 'lesions.tsv'}"
                                      if masks else ""))
        if options.bids is not None:
            say(f"BIDS derivatives (masks, probabilities, sidecars) -> {options.bids}")
        if options.dicom_seg:
            segs = [p for p in result.derived if p.name.endswith("_seg.dcm")]
            say(f"{len(segs)} DICOM Segmentation object(s) CASE_seg.dcm -> {options.output}")
        if result.hand_function:
            say(f"hand function, probability of impairment (mean of the folds' logistic regressions) -> "
                f"{options.output / 'hand_function.csv'}")
            for case, p in sorted(result.hand_function.items()):
                say(f"   {case}: {p:.2f} ({'impaired' if p >= 0.5 else 'good'})")
        failed += result.failed
    if has_kspace:
        if (options.bids is not None or options.dicom_seg) and not has_images:
            log.warning("--bids and --dicom-seg apply to scans (CASE_0000.nii.gz), not to k-space files")
        plans = load_plans(workspace.plans_dir(load_dataset(root).name) / "plans.json")
        result = predict_kspace_folder(options.input, options.output, plans, workspace, approach=options.approach,
                                       folds=options.folds, device=device, progress=options.progress)
        say(f"{len(result.written) // 2} k-space file(s) reconstructed and segmented with {result.approach} "
            f"(folds {', '.join(result.folds)}) -> {options.output}")
        failed += result.failed
    return failed


def evaluate_cohort(root: Path, workspace: Workspace, configurations: list[str] | None = None,
                    folds: list[str] | None = None, progress: bool = True,
                    say: Callable[[str], None] = print, workers: Workers = 1) -> None:
    """Every trained configuration's cross-validation summary; with no configuration named, also the
    reconstruction + segmentation comparison and the hand-function report. AutopipeError when nothing is trained."""
    try:
        for summary in evaluate_crossvalidation(root, workspace, configurations, progress=progress, workers=workers):
            say(summary["text"])
        segmentation_error = None
    except AutopipeError as exc:  # a cohort may have trained only the reconstruction models so far
        segmentation_error = exc
    decision = choose_best_configuration(root, workspace) if configurations is None else None
    if decision is not None:
        say(f"\nwhich configuration predict uses ({best_configuration(workspace, load_dataset(root).name)})\n"
            f"{format_decision(decision)}")
        say(hand_function_note(workspace, root, decision))
    comparison = compare_crossvalidation(root, workspace, folds=folds, progress=progress) \
        if configurations is None else None
    if comparison is not None:
        say(f"\nreconstruction + segmentation approaches\n{comparison['text']}\nwrote {comparison['path']}")
    hand = evaluate_hand_function(root, workspace, load_dataset(root).name) if configurations is None else None
    if hand is not None:
        say(f"\n{hand['text']}")
    if comparison is None and hand is None and segmentation_error is not None:
        raise segmentation_error


def hand_function_note(workspace: Workspace, root: Path, decision: dict) -> str:
    """Whether the hand-function predictors use the chosen configuration's out-of-fold masks, and if not, why."""
    plans = load_plans(workspace.plans_dir(load_dataset(root).name) / "plans.json")
    if plans.hand_function is None:
        return ""
    used, chosen = plans.hand_function.configuration, decision["chosen"]
    if used == chosen:
        return f"hand function: its predictors use the out-of-fold masks of {used}, the chosen configuration"
    if chosen == ENSEMBLE:
        return (f"hand function: its predictors use the out-of-fold masks of {used}; the ensemble has no "
                "template-space masks of its own, so it cannot give them features")
    return (f"hand function: its predictors use the out-of-fold masks of {used}, planned before cross-validation chose "
            f"{chosen}; to follow the choice, set hand_function.configuration to {chosen} in plans.json and run "
            "`autopipe train FOLD -c hand_function --force` for every fold")
