"""A `Problem`: one thing `autopipe check` found wrong (error) or suspicious (warning) in a cohort."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """Which case and file (relative to the cohort root), what is wrong, and what to do about it."""

    severity: str  # ERROR or WARNING
    case: str | None
    file: str | None
    what: str
    fix: str


def error(case: str | None, file: str | None, what: str, fix: str) -> Problem:
    return Problem(ERROR, case, file, what, fix)


def warning(case: str | None, file: str | None, what: str, fix: str) -> Problem:
    return Problem(WARNING, case, file, what, fix)


def relative(root: Path, path: Path) -> str:
    """`path` as written in a Problem: relative to the cohort root, with forward slashes."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Errors first, then warnings; cohort-wide problems before per-case ones, cases in order."""
    return sorted(problems, key=lambda p: (p.severity != ERROR, p.case is not None, p.case or "", p.file or ""))


def format_problem(p: Problem) -> str:
    """One line: `ERROR   case_003  imagesTr/case_003_0000.nii.gz: 12 voxels are NaN — re-export ...`."""
    line = f"{p.severity.upper():<8}"
    if p.case:
        line += f"{p.case}  "
    if p.file:
        line += f"{p.file}: "
    line += p.what
    return f"{line} — {p.fix}" if p.fix else line


def grouped(severity: str, cases: list[str], file: str | None, what: str, fix: str, shown: int = 5) -> Problem:
    """One problem for several cases: named in `case` when alone, listed at the front of `what` otherwise."""
    if len(cases) == 1:
        return Problem(severity, cases[0], file, what, fix)
    names = ", ".join(cases[:shown]) + (f" and {len(cases) - shown} more" if len(cases) > shown else "")
    return Problem(severity, None, file, f"{len(cases)} cases ({names}): {what}", fix)


def dims(values: object, sep: str = "x") -> str:
    """A shape or list of numbers as text: (20, 24, 16) -> '20x24x16'."""
    return sep.join(str(v) for v in np.asarray(values).tolist())
