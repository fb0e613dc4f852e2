"""Checks on the optional clinical table: readable, one row per case, known hand-function values, balance."""

from __future__ import annotations

import csv
from collections import Counter

from autopipe.cohort.clinical import hand_function_value, read_clinical_rows
from autopipe.cohort.dataset import ClinicalSpec, DatasetSpec
from autopipe.cohort.problem import ERROR, WARNING, Problem, error, grouped, relative, warning
from autopipe.errors import first_line

MIN_MINORITY_FRACTION = 0.2


def clinical_problems(spec: DatasetSpec, cases: list[str]) -> list[Problem]:
    """Every check on the clinical table against the cohort's case ids; none when dataset.json declares no table."""
    path = spec.clinical_path()
    if spec.clinical is None or path is None:
        return []
    clinical, file = spec.clinical, relative(spec.root, path)
    if not path.is_file():
        return [error(None, file, "the clinical table is missing (dataset.json declares it)",
                      "add the file, or remove 'clinical' from dataset.json")]
    try:
        header, rows = read_clinical_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [error(None, file, f"cannot be read as a CSV table ({first_line(exc)})",
                      "save it as CSV (UTF-8, comma- or semicolon-separated) with a header row")]
    missing = [c for c in (clinical.case_column, clinical.target_column) if c not in header]
    if missing:
        return [error(None, file, f"column(s) {', '.join(missing)} missing (found: {', '.join(header) or 'none'})",
                      "name the columns as dataset.json 'clinical' says (case_column, target_column), or change "
                      "them there")]
    ids = [row[clinical.case_column] for row in rows]
    first_row = {}
    for row in rows:
        first_row.setdefault(row[clinical.case_column], row)
    targets = {c: first_row[c][clinical.target_column] for c in cases if c in first_row}
    return (duplicate_problems(ids, file) + coverage_problems(ids, cases, file)
            + target_problems(targets, clinical, file) + balance_problems(targets, clinical, file))


def duplicate_problems(ids: list[str], file: str) -> list[Problem]:
    """A case listed twice is ambiguous: which row holds its label?"""
    return [error(case, file, f"has {n} rows", "keep one row per case")
            for case, n in sorted(Counter(ids).items()) if n > 1]


def coverage_problems(ids: list[str], cases: list[str], file: str) -> list[Problem]:
    """Cohort cases without a row (error), rows for case ids the cohort does not have (warning)."""
    listed, known = set(ids), set(cases)
    problems = []
    without = [c for c in cases if c not in listed]
    if without:
        problems.append(grouped(ERROR, without, file, "no row in the clinical table",
                                "add a row per case (case id exactly as in imagesTr; an empty label is allowed)"))
    unknown = sorted(listed - known)
    if unknown:
        problems.append(grouped(WARNING, unknown, file, "a row for a case id that is not in imagesTr (ignored)",
                                "check the case id's spelling, or remove the row"))
    return problems


def target_problems(targets: dict[str, str], clinical: ClinicalSpec, file: str) -> list[Problem]:
    """Unknown hand-function values (error) and empty ones (warning: the case is left out of that model)."""
    problems, empty = [], []
    for case, raw in sorted(targets.items()):
        try:
            if hand_function_value(raw, clinical) is None:
                empty.append(case)
        except ValueError:
            problems.append(error(case, file, f"{clinical.target_column} '{raw}' is not a known value",
                                  f"use {clinical.negative}/{clinical.positive} or 0/1 (leave it empty if unknown)"))
    if empty:
        problems.append(grouped(WARNING, empty, file, f"no {clinical.target_column} value: left out of the "
                                                      "hand-function model", "fill it in if it is known"))
    return problems


def balance_problems(targets: dict[str, str], clinical: ClinicalSpec, file: str) -> list[Problem]:
    """Warn when one hand-function class is missing or rare (under 20% of the labelled cases)."""
    counts = Counter(_value_or_none(raw, clinical) for raw in targets.values())
    counts.pop(None, None)
    total = sum(counts.values())
    if total == 0:
        return []
    names = {1: clinical.positive, 0: clinical.negative}
    if len(counts) == 1:
        only = names[next(iter(counts))]
        return [warning(None, file, f"every labelled case ({total}) is '{only}': the hand-function model has "
                                    "nothing to tell apart", "add cases of the other class")]
    minority, n = min(counts.items(), key=lambda item: item[1])
    if n / total >= MIN_MINORITY_FRACTION:
        return []
    return [warning(None, file, f"only {n} of {total} labelled cases ({n / total:.0%}) are '{names[minority]}'",
                    "the hand-function model will be unreliable for that class: add such cases if you can")]


def _value_or_none(raw: str, clinical: ClinicalSpec) -> int | None:
    try:
        return hand_function_value(raw, clinical)
    except ValueError:
        return None
