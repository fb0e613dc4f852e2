"""The hand-function predictors of a fold, trained on lesion features without leakage.

    results/DATASET/hand_function/fold_K/
        predictor.json        the grid, the cells, the features and one classifier per variant (written last)
        held_out.json         each held-out subject's label and probability of impairment per variant
    (`autopipe evaluate` adds each fold's coefficient maps: autopipe.evaluate.hand_function)

Variants: `predicted` uses lesion masks segmented by a U-Net that never saw the subject: a training
subject's from the fold that held it out (its out-of-fold prediction), a held-out subject's from fold K's
own model. So fold K's predictor waits until every fold's segmentation has predicted its held-out cases.
`oracle` uses the ground-truth masks (what a perfect segmentation would give), `baseline` only the total
lesion volume of the `predicted` masks (does lesion location add anything?). Labels of held-out subjects
are read for scoring only, after every classifier is fitted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.cohort.clinical import read_hand_function
from autopipe.cohort.image_io import read_volume
from autopipe.errors import AutopipeError
from autopipe.files import read_json, to_plain, write_json
from autopipe.layout import HELD_OUT_FILE, PREDICTOR_FILE, case_paths, fold_dir, hand_dir, template_space_prediction
from autopipe.models.checkpoint import checkpoint_path
from autopipe.models.hand_predictor import VARIANTS
from autopipe.models.lesion_features import (
    SUMMARY_FEATURES,
    CoarseGrid,
    brain_cells,
    coarse_grid,
    feature_vector,
    on_full_grid,
    smooth_cells,
    template_brain_on_grid,
)
from autopipe.paths import Workspace
from autopipe.plan.configs import HandFunctionPlan
from autopipe.plan.splits import load_splits
from autopipe.preprocess.folds import Fold, load_fold
from autopipe.preprocess.properties import read_properties
from autopipe.preprocess.storage import plan_digest, read_case
from autopipe.progress import track
from autopipe.train.hand_classifier import Smoothing, fit_classifier

log = logging.getLogger(__name__)



def segmentation_sources(splits: list[dict], fold: int) -> dict[str, int]:
    """case -> the fold whose U-Net segments it for fold `fold`'s predictor: the fold that held it out.

    A training subject's mask thus never comes from a network trained on it, and a held-out subject's
    comes from fold `fold`'s own network. AutopipeError when the splits do not allow that.
    """
    holders: dict[str, list[int]] = {}
    for j, split in enumerate(splits):
        for case in split["val"]:
            holders.setdefault(case, []).append(j)
    sources = {}
    for case in [*splits[fold]["train"], *splits[fold]["val"]]:
        found = holders.get(case, [])
        if len(found) != 1 or case in splits[found[0]]["train"]:
            raise AutopipeError(f"case {case} is held out by {len(found)} folds: out-of-fold segmentations need every "
                                "case held out by exactly one fold", fix="run `autopipe plan` to rewrite the splits")
        sources[case] = found[0]
    return sources


@dataclass(frozen=True)
class FeatureSet:
    """Feature rows of some subjects, in one variant."""

    cases: tuple[str, ...]
    matrix: np.ndarray
    names: tuple[str, ...]

    def rows(self, cases: list[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.cases)}
        return self.matrix[[index[c] for c in cases]]


def ready(fold: Fold, workspace: Workspace, plan: HandFunctionPlan) -> tuple[bool, list[str]]:
    """Whether every segmentation fold `fold` needs has predicted its held-out cases; the folds still missing."""
    splits = load_splits(workspace.plans_dir(fold.spec.name) / "splits_final.json")
    sources = segmentation_sources(splits, int(fold.name))
    missing = sorted({str(j) for c, j in sources.items() if not _current(_mask_path(workspace, fold, plan, j, c),
                                                                        _model(workspace, fold, plan, j))}, key=int)
    return not missing, missing


def train_hand_predictor(fold: Fold, workspace: Workspace, *, seed: int = 0, progress: bool = True) -> dict:
    """Fit fold K's classifiers (every variant), score its held-out subjects, write the fold's folder."""
    plan = _hand_plan(fold)
    splits = load_splits(workspace.plans_dir(fold.spec.name) / "splits_final.json")
    sources = segmentation_sources(splits, int(fold.name))
    labels = labels_of(fold)
    unlabelled = sorted(c for c in sources if labels.get(c) is None)
    if unlabelled:
        log.warning("hand function: %d case(s) without a label in %s are left out (%s)", len(unlabelled),
                    fold.spec.clinical_path(), ", ".join(unlabelled[:8]))
    train = [c for c in fold.train_cases if labels.get(c) is not None]
    held_out = [c for c in fold.val_cases if labels.get(c) is not None]
    _check_classes(train, held_out, labels, fold)
    masks = {c: _mask_path(workspace, fold, plan, sources[c], c) for c in [*train, *held_out]}
    template = read_properties(case_paths(fold.preprocessed, train[0])[1]).template
    grid, cells = grid_and_cells(fold, train[0], plan)
    features = _planned_features(plan, fold)
    variants = extract_features(fold, features, grid, cells, masks, [*train, *held_out], progress)
    classifiers = {name: fit_classifier(rows.rows(train), [labels[c] for c in train], rows.names,
                                        c_grid=plan.c_grid, class_weight=plan.class_weight,
                                        inner_folds=plan.inner_folds, seed=seed,
                                        standardize=[not n.startswith("cell_") for n in rows.names],
                                        where=f"training subjects of fold {fold.name}",
                                        smoothing=map_smoothing(rows.names, grid, cells, plan.smoothing_mm))
                   for name, rows in variants.items()}
    scores = {c: {"label": labels[c], **{name: float(classifiers[name].probability(variants[name].rows([c]))[0])
                                        for name in variants}} for c in held_out}
    out = hand_dir(workspace, fold.spec.name, fold.name)
    (out / PREDICTOR_FILE).unlink(missing_ok=True)  # an older predictor must not pass for these scores' one
    write_json(out / HELD_OUT_FILE, {"fold": fold.name, "variants": VARIANTS, "cases": scores})
    predictor = {
        "fold": fold.name, "configuration": plan.configuration, "template": template,
        "plan_digest": plan_digest(plan), "plan": to_plain(plan),
        "features": {"predicted": list(features), "oracle": list(features), "baseline": ["lesion_load"]},
        "grid": grid.to_json(), "cells": [int(c) for c in cells],
        "segmentations": {c: str(p) for c, p in masks.items()}, "left_out_unlabelled": unlabelled,
        "training_cases": train, "held_out_cases": held_out, "variants": VARIANTS,
        "classifiers": {name: model.to_json() for name, model in classifiers.items()},
    }
    write_json(out / PREDICTOR_FILE, predictor)  # last: the fold's predictor is finished exactly when it exists
    log.info("hand function fold %s: C %s (predicted), %s (oracle), %s (baseline); %d training, %d held-out "
             "subjects -> %s", fold.name, *(f"{classifiers[v].c:g}" for v in VARIANTS), len(train), len(held_out), out)
    return predictor


def map_smoothing(names: list[str], grid: CoarseGrid, cells: np.ndarray, sigmas_mm: tuple[float, ...]
                  ) -> Smoothing | None:
    """The planned blurs of the lesion-map columns ("cell_*", in `cells` order), or None without such columns."""
    columns = np.array([n.startswith("cell_") for n in names], bool)
    if not columns.any():
        return None
    return Smoothing(columns, tuple(sigmas_mm), lambda rows, sigma: smooth_cells(rows, grid, cells, sigma))


def extract_features(fold: Fold, features: tuple[str, ...], grid: CoarseGrid, cells: np.ndarray,
                     masks: dict[str, Path], cases: list[str], progress: bool = True) -> dict[str, FeatureSet]:
    """Every variant's feature rows of `cases`; predicted masks from `masks`, ground truth from preprocessing."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name in VARIANTS}
    names: dict[str, tuple[str, ...]] = {}
    for case in track(cases, len(cases), f"hand-function features fold {fold.name}", enabled=progress):
        predicted = _read_mask(masks[case], grid, case)
        properties = read_properties(case_paths(fold.preprocessed, case)[1])
        truth = on_full_grid(read_case(case_paths(fold.preprocessed, case)[0], ("seg",))["seg"] > 0, properties)
        for name, mask, wanted in (("predicted", predicted, features), ("oracle", truth, features),
                                   ("baseline", predicted, ("lesion_load",))):
            vector, labels = feature_vector(mask, grid, cells, wanted)
            rows[name].append(vector)
            names[name] = tuple(labels)
    return {name: FeatureSet(tuple(cases), np.stack(rows[name]), names[name]) for name in VARIANTS}


def labels_of(fold: Fold) -> dict[str, int | None]:
    """case -> 1 impaired / 0 good / None, from the cohort's clinical table."""
    path = fold.spec.clinical_path()
    if path is None or not path.is_file():
        raise AutopipeError("the cohort has no clinical table, so there is no hand function to predict",
                            where=str(path or fold.spec.root / "dataset.json"),
                            fix='add clinical.csv and declare it in dataset.json ("clinical"), then plan again')
    try:
        labels = read_hand_function(path, fold.spec.clinical)
    except (ValueError, KeyError) as exc:
        raise AutopipeError(f"the hand-function column cannot be read ({exc})", where=str(path),
                            fix="run `autopipe check` to see every problem in the table") from None
    return labels


def train_ready_predictors(root: Path, workspace: Workspace, folds: list[str], *, force: bool = False,
                           progress: bool = True) -> list[dict]:
    """Train the predictor of each of `folds` whose segmentations are all there and that is missing or older
    than them; say which folds the others wait for."""
    trained, waiting, missing_folds = [], [], set()
    for name in folds:
        fold = load_fold(root, workspace, name)
        plan = _hand_plan(fold)
        ok, missing = ready(fold, workspace, plan)
        if not ok:
            waiting.append(name)
            missing_folds.update(missing)
        elif force or not is_current(fold, workspace, plan):
            trained.append(train_hand_predictor(fold, workspace, progress=progress))
        else:
            log.info("hand function fold %s is up to date (%s)", name, hand_dir(workspace, fold.spec.name, name))
    if waiting:
        log.info("hand function: the predictors of fold(s) %s wait for the held-out predictions of %s fold(s) %s; "
                 "each is trained as soon as the folds it needs are (`autopipe train FOLD`)", ", ".join(waiting),
                 plan.configuration, ", ".join(sorted(missing_folds, key=int)))
    return trained


def is_current(fold: Fold, workspace: Workspace, plan: HandFunctionPlan) -> bool:
    """The fold's predictor exists, was made with this plan, and is newer than every mask it read."""
    path = hand_dir(workspace, fold.spec.name, fold.name) / PREDICTOR_FILE
    try:
        predictor = read_json(path)
    except AutopipeError:  # missing or unreadable: train it (again)
        return False
    clinical = fold.spec.clinical_path()
    inputs = [Path(p) for p in predictor.get("segmentations", {}).values()] + ([clinical] if clinical else [])
    return predictor.get("plan_digest") == plan_digest(plan) and all(_current(path, p) for p in inputs if p.exists())


def _hand_plan(fold: Fold) -> HandFunctionPlan:
    plan = fold.plans.hand_function
    if plan is None:
        raise AutopipeError("the plan has no hand-function predictor (no clinical table with at least 2 labelled "
                            "subjects of each class when it was planned)", where=str(fold.spec.root),
                            fix="add hand_function labels to clinical.csv and run `autopipe plan` again")
    if plan.configuration not in fold.plans.configurations:
        raise AutopipeError(f"hand_function.configuration {plan.configuration} is not a planned configuration",
                            fix=f"set it to one of {', '.join(fold.plans.configurations)} in plans.json")
    return plan


def _planned_features(plan: HandFunctionPlan, fold: Fold) -> tuple[str, ...]:
    if fold.plans.preprocessing.space == "template":
        return plan.features
    kept = tuple(f for f in plan.features if f in SUMMARY_FEATURES)
    log.warning("hand function: the cases are not registered to a template, so no lesion map; using %s",
                ", ".join(kept))
    return kept or ("lesion_load",)


def _check_classes(train: list[str], held_out: list[str], labels: dict, fold: Fold) -> None:
    where = str(fold.spec.clinical_path())
    for cases, role in ((train, "training"), (held_out, "held-out")):
        classes = {labels[c] for c in cases}
        if role == "training" and classes != {0, 1}:
            present = "no labelled subject" if not classes else \
                f"only {'impaired' if 1 in classes else 'good'} subjects"
            raise AutopipeError(f"fold {fold.name}'s training cases hold {present}: a classifier needs both classes",
                                where=where, fix="label more subjects of the missing class, or plan again so the "
                                                 "folds are stratified by hand function")
        if role == "held-out" and len(classes) < 2:
            log.warning("hand function fold %s: its %d held-out subject(s) are all %s, so its ROC AUC is undefined; "
                        "the pooled metrics over all folds still are", fold.name, len(cases),
                        "impaired" if 1 in classes else "good")


def grid_and_cells(fold: Fold, case: str, plan: HandFunctionPlan) -> tuple[CoarseGrid, np.ndarray]:
    """The plan's coarse grid over the full template grid of `case`, and its brain cells (none in native space)."""
    properties = read_properties(case_paths(fold.preprocessed, case)[1])
    full = properties.full_grid.as_grid()
    grid = coarse_grid(full.shape, full.affine, plan.grid_mm)
    if properties.template is None:  # native-space preprocessing: summaries only, no map cells
        return grid, np.zeros(0, int)
    return grid, brain_cells(template_brain_on_grid(properties.template, full.shape, full.affine), grid)


def _read_mask(path: Path, grid: CoarseGrid, case: str) -> np.ndarray:
    volume = read_volume(path)
    if tuple(volume.data.shape) != tuple(grid.fine_shape) or not np.allclose(volume.affine, grid.fine_affine,
                                                                             atol=1e-3):
        raise AutopipeError(f"the template-space segmentation of {case} is not on the template grid", where=str(path),
                            fix="validate its fold again: `autopipe train FOLD --continue`")
    return volume.data > 0


def _mask_path(workspace: Workspace, fold: Fold, plan: HandFunctionPlan, source: int, case: str) -> Path:
    return template_space_prediction(fold_dir(workspace, fold.spec.name, plan.configuration, str(source)), case)


def _model(workspace: Workspace, fold: Fold, plan: HandFunctionPlan, source: int) -> Path:
    return checkpoint_path(fold_dir(workspace, fold.spec.name, plan.configuration, str(source)), "final")


def _current(path: Path, than: Path) -> bool:
    return path.is_file() and than.is_file() and path.stat().st_mtime >= than.stat().st_mtime
