"""The joint model on one fold: its training job, and its hand-function predictions for the held-out cases.

    results/DATASET/joint_CONFIGURATION[_rR]/fold_K/
        checkpoint_*.pt, progress.png, progress.json   as for a segmentation configuration (autopipe.train.fold)
        hand_function.json                              P(impaired) and label of each held-out case

The plan's r (JointPlan.hand_function_weight) names the folder joint_CONFIGURATION; any other r gets its own
folder (joint_3d_fullres_r0.5), so a sweep over r never overwrites the planned model.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from autopipe.errors import AutopipeError
from autopipe.layout import fold_dir, joint_name
from autopipe.paths import Workspace
from autopipe.plan.configs import Plans
from autopipe.preprocess.folds import Fold
from autopipe.train.fold import training_jobs
from autopipe.train.trainer import TrainingJob

log = logging.getLogger(__name__)


def planned_joint_name(plans: Plans) -> str | None:
    """The name the plan's joint U-Net trains under (None when the plan has none): what `-c` selects it by."""
    if plans.joint is None:
        return None
    return joint_name(plans.joint.configuration, plans.joint.hand_function_weight, plans.joint.hand_function_weight)


def joint_job(fold: Fold, workspace: Workspace, labels: dict[str, int | None], r: float, planned_r: float,
              configuration: str, *, epochs: int | None = None, iterations: int | None = None,
              loader_workers: int = 0, seed: int = 12345, optimizer: str | None = None) -> TrainingJob:
    """The segmentation job of `configuration` on `fold` (autopipe.train.fold.training_jobs) turned into the joint
    model with weight r (`labels`: case -> 0/1; unlabelled training cases add to L_seg only). Held-out labels
    only give the validation curve of L_cls: the final network, which is what gets scored, never depends on them."""
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
    return replace(plain, name=name, out_dir=fold_dir(workspace, fold.spec.name, name, fold.name),
                   hand_labels=hand_labels, hand_weight=float(r))
