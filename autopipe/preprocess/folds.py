"""One cross-validation fold of a cohort, ready for training: its plans, its preprocessed folder and its cases.

Every stage after preprocessing (train, predict's validation, evaluate's comparison) starts from a Fold, and
`load_fold` refuses one whose cases are not all preprocessed with the current plan or failed a plausibility
check that nobody accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autopipe.cohort.dataset import DatasetSpec, load_dataset
from autopipe.errors import AutopipeError
from autopipe.layout import data_identifier
from autopipe.paths import Workspace
from autopipe.plan.configs import Plans
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.preprocess.acceptance import unaccepted_failures
from autopipe.preprocess.storage import is_finished, plan_digest

ALL = "all"


@dataclass(frozen=True)
class Fold:
    """One fold of a cohort: its plans, preprocessed folder and cases."""

    spec: DatasetSpec
    plans: Plans
    preprocessed: Path
    digest: str
    name: str  # "0".."4" or "all"
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]


def parse_fold(text: str) -> str:
    """'0'..'9' or 'all' (as typed on the command line)."""
    if text == ALL or text.isdigit():
        return text if text == ALL else str(int(text))
    raise AutopipeError(f"fold '{text}' is not a number or 'all'", fix="use 0-4 for a cross-validation fold, or all")


def load_fold(root: Path, workspace: Workspace, fold: str) -> Fold:
    """The fold's cases, checked to be preprocessed with the current plan."""
    spec = load_dataset(root)
    plans_dir = workspace.plans_dir(spec.name)
    plans = load_plans(plans_dir / "plans.json")
    splits = load_splits(plans_dir / "splits_final.json")
    if fold == ALL:
        train_cases, val_cases = sorted({c for s in splits for c in s["train"] + s["val"]}), []
    elif int(fold) < len(splits):
        train_cases, val_cases = splits[int(fold)]["train"], splits[int(fold)]["val"]
    else:
        raise AutopipeError(f"fold {fold} does not exist: splits_final.json has {len(splits)} folds",
                            where=str(plans_dir / "splits_final.json"), fix=f"use 0-{len(splits) - 1} or all")
    preprocessing = plans.preprocessing
    folder = workspace.preprocessed / spec.name / data_identifier(preprocessing.space, preprocessing.target_spacing)
    digest = plan_digest(preprocessing)
    missing = [c for c in [*train_cases, *val_cases] if not is_finished(folder, c, digest)]
    if missing:
        raise AutopipeError(
            f"{len(missing)} case(s) of fold {fold} are not preprocessed with the current plan "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})", where=str(folder),
            fix="run `autopipe preprocess` first (it redoes only what is missing or out of date)")
    implausible = unaccepted_failures(folder, [*train_cases, *val_cases])
    if implausible:
        listing = "; ".join(f"{case}: {next(iter(checks.values()))}" for case, checks in list(implausible.items())[:3])
        raise AutopipeError(
            f"{len(implausible)} case(s) of fold {fold} failed a plausibility check in preprocessing ({listing}"
            f"{'; ...' if len(implausible) > 3 else ''})", where=str(folder),
            fix="fix the cause and run `autopipe preprocess` again, or accept them after a look at their QC "
                f"pictures: autopipe preprocess --accept {' '.join(implausible)}")
    return Fold(spec, plans, folder, digest, fold, tuple(train_cases), tuple(val_cases))
