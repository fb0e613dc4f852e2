"""Which models `autopipe train FOLD` trains, as jobs for the training loop (autopipe.train.fit).

    segmentation   one job per configuration of the plan (3d_fullres, 2d): results/DATASET/CONFIGURATION/fold_K
    joint U-Net    the plan's joint configuration with a whole-brain hand-function head, started from the fold's
                   trained plain U-Net: results/DATASET/joint_CONFIGURATION (joint_CONFIGURATION_rR for another
                   r, so a sweep over r never overwrites the planned model)
    k-space        the models the plan's reconstruction approaches need, on the fold's cases with prepared
                   k-space, cirim first: results/DATASET/reconstruction/MODEL/fold_K

Nothing is trained on data that is not finished preprocessing with the current plan (autopipe.preprocess.folds).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from autopipe.errors import AutopipeError
from autopipe.layout import fold_dir, joint_name, kspace_dir, slice_model_dir
from autopipe.models.checkpoint import checkpoint_path
from autopipe.models.slice_models import MODEL_NAMES, SLICE_MODELS, builds_on_cirim, model_kwargs, planned_models
from autopipe.paths import Workspace
from autopipe.plan.configs import INITIAL_LR, Plans
from autopipe.plan.planner import NUM_CLASSES
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.kspace_slices import cases_with_kspace
from autopipe.train.fit import Job, Upstream
from autopipe.train.hand_fold import grid_and_cells
from autopipe.train.joint_start import JointSettings
from autopipe.train.segmentation_task import SegmentationTask, TrainingSettings
from autopipe.train.slice_task import SliceSettings, SliceTask

log = logging.getLogger(__name__)


def training_jobs(fold: Fold, workspace: Workspace, configurations: list[str] | None, *, epochs: int | None = None,
                  iterations: int | None = None, loader_workers: int = 0, seed: int = 12345,
                  optimizer: str | None = None) -> list[Job]:
    """One job per configuration the plan instantiated (or those named), with CLI overrides applied."""
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
        jobs.append(Job(
            name=name, fold=fold.name, out_dir=fold_dir(workspace, fold.spec.name, name, fold.name),
            plan_digest=fold.digest, train_cases=fold.train_cases, val_cases=fold.val_cases,
            task=SegmentationTask(config=config, preprocessed=fold.preprocessed,
                                  transpose_forward=tuple(fold.plans.transpose_forward),
                                  in_channels=fold.plans.preprocessing.num_channels, num_classes=NUM_CLASSES,
                                  settings=settings)))
    return jobs


def planned_joint_name(plans: Plans) -> str | None:
    """The name the plan's joint U-Net trains under (None when the plan has none): what `-c` selects it by."""
    if plans.joint is None:
        return None
    return joint_name(plans.joint.configuration, plans.joint.hand_function_weight, plans.joint.hand_function_weight)


def joint_job(fold: Fold, workspace: Workspace, labels: dict[str, int | None], r: float, planned_r: float,
              configuration: str, *, epochs: int | None = None, iterations: int | None = None,
              loader_workers: int = 0, seed: int = 12345, optimizer: str | None = None) -> Job:
    """The segmentation job of `configuration` on `fold` (training_jobs) turned into the joint
    model with weight r (`labels`: case -> 0/1; unlabelled training cases add to L_seg only), built on the fold's
    trained `configuration`. Held-out labels only give the validation curve of L_cls: the final network, which is
    what gets scored, never depends on them."""
    if not r > 0:
        raise AutopipeError(f"hand-function weight r = {r}: the joint model needs r > 0 (r = 0 is the plain U-Net)")
    plain = training_jobs(fold, workspace, [configuration], epochs=epochs, iterations=iterations,
                          loader_workers=loader_workers, seed=seed, optimizer=optimizer)[0]
    clinical = fold.spec.clinical_path()
    where = str(clinical) if clinical else f"the clinical table of {fold.spec.name}"
    missing = [case for case in fold.train_cases if labels.get(case) is None]
    if missing:
        log.warning("joint %s fold %s: %d training case(s) without a hand-function label train the segmentation "
                    "only (%s)", configuration, fold.name, len(missing), ", ".join(missing[:10]))
    classes = {labels[case] for case in fold.train_cases if labels.get(case) is not None}
    if not classes <= {0, 1}:
        raise AutopipeError(f"hand-function labels must be 0 (good) or 1 (impaired), got {sorted(classes)}",
                            where=where, fix="read the labels with autopipe.cohort.clinical.read_hand_function")
    if len(classes) < 2:
        raise AutopipeError(f"the training cases of fold {fold.name} hold hand-function class(es) {sorted(classes)} "
                            "only; the joint model needs both 0 (good) and 1 (impaired)", where=where,
                            fix="add cases of the missing class, or train the plain segmentation model")
    name = joint_name(configuration, r, planned_r)
    hand_labels = tuple((case, int(label)) for case in (*fold.train_cases, *fold.val_cases)
                        if (label := labels.get(case)) is not None)
    grid, cells = grid_and_cells(fold, fold.train_cases[0], fold.plans.hand_function)
    if not len(cells):
        raise AutopipeError("the joint model reads lesion maps on the template grid, and this cohort is "
                            "preprocessed in native space", where=str(fold.preprocessed),
                            fix="plan with template-space preprocessing, or use the logistic regressions alone")
    settings = JointSettings(grid, tuple(int(c) for c in cells), fold.plans.joint.brain_every,
                             fold.plans.hand_function)
    upstream = Upstream(configuration, checkpoint_path(fold_dir(workspace, fold.spec.name, configuration, fold.name),
                                                       "final"))
    return replace(plain, name=name, out_dir=fold_dir(workspace, fold.spec.name, name, fold.name),
                   task=replace(plain.task, hand_labels=hand_labels, hand_weight=float(r), joint_settings=settings),
                   builds_on=upstream)


def kspace_cases(fold: Fold) -> tuple[list[str], list[str]]:
    """The fold's training and validation cases that have prepared k-space."""
    folder = kspace_dir(fold.preprocessed)
    return cases_with_kspace(folder, fold.train_cases), cases_with_kspace(folder, fold.val_cases)


def slice_jobs(fold: Fold, workspace: Workspace, models: list[str] | None = None, *, epochs: int | None = None,
               seed: int = 12345) -> list[Job]:
    """One job per k-space model (the planned ones unless named), in training order."""
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
                "reconstruction_weight": plans.multitask.reconstruction_weight,
                "segmentation_supervision": plans.multitask.segmentation_supervision} if plans.multitask else {}))
        cirim = checkpoint_path(slice_model_dir(workspace, fold.spec.name, "cirim", fold.name), "final")
        jobs.append(Job(
            name=name, fold=fold.name, out_dir=slice_model_dir(workspace, fold.spec.name, name, fold.name),
            plan_digest=fold.digest, train_cases=tuple(train_cases), val_cases=tuple(val_cases),
            task=SliceTask(name, model_kwargs(name, plans), kspace_dir(fold.preprocessed), settings,
                           _planned_seconds_per_slice(name, plans),
                           plans.multitask.segmentation_classes if plans.multitask else None),
            builds_on=Upstream("cirim", cirim) if builds_on_cirim(name, plans) else None))
    return jobs


def _planned_seconds_per_slice(name: str, plans: Plans) -> float | None:
    """The plan's step estimate for this model: cirim's, or the multitask networks' (CIRIM + U-Net cascades) for
    those with a reconstruction part; a segmentation U-Net alone has none (the multitask one would overstate it)."""
    if name == "cirim":
        return plans.reconstruction.seconds_per_iteration
    return plans.multitask.seconds_per_iteration if SLICE_MODELS[name].reconstructs else None
