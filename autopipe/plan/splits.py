"""Cross-validation folds: nnU-Net's 5-fold split, stratified by hand function and grouped by patient when known.

- Deterministic: seed 12345 (nnU-Net's), over case ids sorted by name.
- Hand-function labels present: StratifiedKFold keeps the impaired/good ratio in every fold (cases
  without a label form their own stratum).
- A patient column (dataset.json "patients": {case: patient}, or a patient/subject column in the
  clinical table): no patient is ever in two folds (KFold over sorted patients, or
  StratifiedGroupKFold with labels). Without one, every case is its own patient.
- Fewer cases (or patients) than folds: as many folds as there are, with a warning, from 2 on;
  one case cannot be cross-validated and raises an AutopipeError.
Written as nnU-Net's splits_final.json: a list of {"train": [...], "val": [...]}.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from autopipe.errors import AutopipeError

log = logging.getLogger(__name__)

NUM_FOLDS = 5
SEED = 12345
MISSING_STRATUM = -1


def make_splits(case_ids: list[str], labels: dict[str, int | None] | None = None,
                patients: dict[str, str] | None = None, num_folds: int = NUM_FOLDS,
                seed: int = SEED) -> tuple[list[dict[str, list[str]]], str]:
    """Folds over `case_ids` and a one-line description of how they were made."""
    cases = sorted(case_ids)
    groups = np.array([patients.get(c, c) if patients else c for c in cases])
    units = len(set(groups))
    if units < 2:
        raise AutopipeError(f"{len(cases)} case(s) from {units} patient(s): cross-validation needs at least 2",
                            fix="add cases; autopipe needs 2 or more patients to make train/validation folds")
    folds = min(num_folds, units)
    note = ""
    if folds < num_folds:
        note = f"; only {units} {'patients' if patients else 'cases'}: {folds} folds instead of {num_folds}"
        log.warning("%d %s: making %d folds instead of %d", units, "patients" if patients else "cases",
                    folds, num_folds)
    strata = _strata(cases, labels, folds)
    if labels and strata is None:
        note += "; too few labeled cases per class to stratify"
    if patients and strata is None:
        pairs, how = _patient_kfold(groups, folds, seed), "KFold over sorted patients"
    elif strata is not None:
        splitter = StratifiedGroupKFold if patients else StratifiedKFold
        with warnings.catch_warnings():  # a class smaller than the folds: sklearn warns, the split is valid
            warnings.simplefilter("ignore", UserWarning)
            pairs = list(splitter(folds, shuffle=True, random_state=seed).split(cases, strata, groups))
        how = "stratified by hand function" + (", grouped by patient" if patients else "")
        if any(len(val) == 0 for _, val in pairs):  # rare with few uneven patients
            pairs, how = _patient_kfold(groups, folds, seed), "KFold over sorted patients (stratifying emptied a fold)"
    else:
        pairs = list(KFold(folds, shuffle=True, random_state=seed).split(cases))
        how = "KFold over sorted case ids (nnU-Net)"
    result = [{"train": sorted(cases[i] for i in train), "val": sorted(cases[i] for i in val)} for train, val in pairs]
    return result, f"{folds} folds, {how}, seed {seed}{note}"


def _strata(cases: list[str], labels: dict[str, int | None] | None, folds: int) -> np.ndarray | None:
    """Hand-function class per case (unlabeled: its own stratum); None when no class can fill the folds."""
    if not labels or all(labels.get(c) is None for c in cases):
        return None
    strata = np.array([MISSING_STRATUM if labels.get(c) is None else int(labels[c]) for c in cases])
    return strata if np.bincount(strata - strata.min()).max() >= folds else None


def _patient_kfold(groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """KFold over sorted patient ids; each fold validates all cases of its patients."""
    names = np.array(sorted(set(groups)))
    pairs = []
    for _, val in KFold(folds, shuffle=True, random_state=seed).split(names):
        held_out = np.isin(groups, names[val])
        pairs.append((np.flatnonzero(~held_out), np.flatnonzero(held_out)))
    return pairs


def load_splits(path: Path) -> list[dict[str, list[str]]]:
    """splits_final.json, validated: a non-empty list of {"train": [...], "val": [...]} with case-id strings."""
    fix = "run `autopipe plan` to write it again (existing folds over the same cases are kept)"
    try:
        folds = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutopipeError("no cross-validation folds yet", where=str(path), fix="run `autopipe plan` first") from None
    except (OSError, ValueError) as exc:
        raise AutopipeError(f"cannot be read as JSON ({exc})", where=str(path), fix=fix) from None
    if not isinstance(folds, list) or not folds:
        raise AutopipeError("a non-empty list of folds expected", where=str(path), fix=fix)
    for index, fold in enumerate(folds):
        ok = isinstance(fold, dict) and all(
            isinstance(fold.get(key), list) and all(isinstance(c, str) for c in fold[key]) for key in ("train", "val"))
        if not ok:
            raise AutopipeError(f"fold {index}: {{\"train\": [case ids], \"val\": [case ids]}} expected",
                                where=str(path), fix=fix)
        overlap = sorted(set(fold["train"]) & set(fold["val"]))
        if overlap:
            raise AutopipeError(f"fold {index}: {', '.join(overlap[:5])} both in train and val", where=str(path),
                                fix=fix)
    return folds
