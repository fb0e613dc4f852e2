"""The one gate: every command that reads a cohort refuses it while `autopipe check` finds errors in it.

The same Problems as `autopipe check`, one line each (case, file, what is wrong, what to do). Cases whose
files are unchanged since the last check (size and modification time, and dataset.json's) are not read
again: their results are kept in plans/.check_cache/DATASET.json, inside an output folder of autopipe's
own (never in the cohort). Warnings are left to `autopipe check`.
"""

from __future__ import annotations

import json
from pathlib import Path

from autopipe import __version__
from autopipe.cohort.check import check_cohort
from autopipe.cohort.problem import ERROR, format_problem
from autopipe.errors import AutopipeError
from autopipe.executor import Workers
from autopipe.files import write_json

SHOWN = 8
CACHE_VERSION = f"1/{__version__}"  # a new autopipe may check more: its cache starts empty


def cache_path(plans_root: Path, dataset: str) -> Path:
    return plans_root / ".check_cache" / f"{dataset}.json"


def require_valid_cohort(root: Path, cache: Path | None, workers: Workers = 1, progress: bool = True) -> None:
    """Raise AutopipeError listing the cohort's errors, if it has any (`cache`: see the module docstring)."""
    cached = _read_cache(cache)
    before = json.dumps(cached, sort_keys=True)
    problems = check_cohort(root, workers=workers, progress=progress, cache=cached["cases"])
    if cache is not None and json.dumps(cached, sort_keys=True) != before:
        write_json(cache, cached)
    errors = [p for p in problems if p.severity == ERROR]
    if not errors:
        return
    listed = "\n  ".join(format_problem(p) for p in errors[:SHOWN])
    more = f"\n  ... and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
    raise AutopipeError(f"the cohort has {len(errors)} error(s) that `autopipe check` reports:\n  {listed}{more}",
                        where=str(root), fix=f"fix them (`autopipe check {root.name}` lists every problem with what "
                                             "to do), then run this command again")


def _read_cache(path: Path | None) -> dict:
    empty = {"version": CACHE_VERSION, "cases": {}}
    if path is None or not path.is_file():
        return empty
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return empty  # a damaged cache is only slower: everything is checked again
    return cache if isinstance(cache, dict) and cache.get("version") == CACHE_VERSION else empty
