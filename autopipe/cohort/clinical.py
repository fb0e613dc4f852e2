"""The optional clinical table: one row per case, a hand-function label and any covariates."""

from __future__ import annotations

import csv
from pathlib import Path

from autopipe.cohort.dataset import ClinicalSpec

POSITIVE_WORDS = {"impaired", "1", "yes", "true", "abnormal"}
NEGATIVE_WORDS = {"good", "0", "no", "false", "normal"}


def read_clinical_rows(path: Path | str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file (comma or semicolon separated, UTF-8 with or without BOM)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;\t")
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    header = [h.strip() for h in (reader.fieldnames or [])]
    return header, rows


def hand_function_value(raw: str, spec: ClinicalSpec) -> int | None:
    """1 for the positive class (impaired), 0 for the negative, None for an empty cell.

    Raises ValueError for anything else, so a typo never silently becomes a label.
    """
    word = raw.strip().lower()
    if word == "" or word in {"na", "nan", "n/a"}:
        return None
    if word == spec.positive.lower() or word in POSITIVE_WORDS:
        return 1
    if word == spec.negative.lower() or word in NEGATIVE_WORDS:
        return 0
    raise ValueError(f"'{raw}' is not a known hand-function value "
                     f"(use {spec.negative}/{spec.positive} or 0/1)")


def read_hand_function(path: Path | str, spec: ClinicalSpec) -> dict[str, int | None]:
    """Case id -> label (1 impaired, 0 good, None missing). Assumes `autopipe check` passed."""
    _, rows = read_clinical_rows(path)
    return {row[spec.case_column]: hand_function_value(row.get(spec.target_column, ""), spec) for row in rows}
