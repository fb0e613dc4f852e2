"""The joint model on one fold: its training job, and its hand-function predictions for the held-out cases.

    results/DATASET/joint_CONFIGURATION[_rR]/fold_K/
        checkpoint_*.pt, progress.png, progress.json   as for a segmentation configuration (autopipe.train.fold)
        hand_function.json                              P(impaired) and label of each held-out case

The plan's r (JointPlan.hand_function_weight) names the folder joint_CONFIGURATION; any other r gets its own
folder (joint_3d_fullres_r0.5), so a sweep over r never overwrites the planned model.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from autopipe.errors import AutopipeError
from autopipe.files import write_json
from autopipe.paths import Workspace
from autopipe.predict.hand_inference import predict_hand_probability
from autopipe.predict.models import load_model
from autopipe.preprocess.storage import case_paths, read_case
from autopipe.progress import track
from autopipe.train.checkpoint import checkpoint_path
from autopipe.train.fold import Fold, fold_dir, training_jobs
from autopipe.train.trainer import TrainingJob

JOINT_PREFIX = "joint_"
RESULT_FILE = "hand_function.json"


def joint_name(configuration: str, r: float, planned_r: float) -> str:
    """joint_CONFIGURATION for the planned r, joint_CONFIGURATION_rR for another."""
    name = f"{JOINT_PREFIX}{configuration}"
    return name if math.isclose(r, planned_r) else f"{name}_r{r:g}"


def joint_job(fold: Fold, workspace: Workspace, labels: dict[str, int | None], r: float, planned_r: float,
              configuration: str, *, epochs: int | None = None, iterations: int | None = None,
              loader_workers: int = 0, seed: int = 12345, optimizer: str | None = None) -> TrainingJob:
    """The segmentation job of `configuration` on `fold` (autopipe.train.fold.training_jobs) turned into the joint
    model with weight r, trained on every training case's hand-function label (`labels`: case -> 0/1)."""
    if not r > 0:
        raise AutopipeError(f"hand-function weight r = {r}: the joint model needs r > 0 (r = 0 is the plain U-Net)")
    plain = training_jobs(fold, workspace, [configuration], epochs=epochs, iterations=iterations,
                          loader_workers=loader_workers, seed=seed, optimizer=optimizer)[0]
    clinical = fold.spec.clinical_path()
    where = str(clinical) if clinical else f"the clinical table of {fold.spec.name}"
    missing = [case for case in fold.train_cases if labels.get(case) is None]
    if missing:
        raise AutopipeError(
            f"{len(missing)} training case(s) of fold {fold.name} have no hand-function label: "
            f"{', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}", where=where,
            fix="fill in hand_function for these cases in clinical.csv, or leave the cases out of the dataset")
    classes = {labels[case] for case in fold.train_cases}
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
    return replace(plain, name=name, out_dir=fold_dir(workspace, fold.spec.name, name, fold.name),
                   hand_labels=hand_labels, hand_weight=float(r))


def evaluate_joint_fold(job: TrainingJob, fold: Fold, labels: dict[str, int | None], device: torch.device,
                        progress: bool = True) -> dict:
    """P(impaired) of each held-out case of `fold` by the job's final joint model, with its label (None if
    unknown), written to job.out_dir/hand_function.json and returned."""
    model = load_model(checkpoint_path(job.out_dir, "final"), device)
    cases: dict[str, dict] = {}
    for case in track(fold.val_cases, len(fold.val_cases), f"hand function {job.name} fold {fold.name}",
                      enabled=progress):
        image = read_case(case_paths(fold.preprocessed, case)[0], ("image",))["image"]
        label = labels.get(case)
        cases[case] = {"probability": predict_hand_probability([model], image, device),
                       "label": None if label is None else int(label)}
    result = {"model": job.name, "r": job.hand_weight, "fold": fold.name, "cases": cases}
    write_json(result_path(job.out_dir), result)
    return result


def result_path(out_dir: Path) -> Path:
    """Where evaluate_joint_fold writes a fold's hand-function predictions."""
    return out_dir / RESULT_FILE
