"""Cases whose preprocessing failed a plausibility check, and the analyst's recorded acceptance of them.

A failed check (autopipe.preprocess.plausibility) fails `autopipe preprocess` and makes `autopipe train`
refuse the case, until the analyst fixes the cause or accepts the result after looking at it:
`autopipe preprocess --accept CASE` (or `--accept all`) records, in accepted.json beside the cases,
which checks of which case were accepted and when. An acceptance covers those checks only: a case
that fails another check after a change of plan must be accepted again.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from autopipe.errors import AutopipeError
from autopipe.files import write_json
from autopipe.layout import case_paths
from autopipe.preprocess.properties import CaseProperties, read_properties

ACCEPTED = "accepted.json"
ALL = "all"


def failed_checks(properties: CaseProperties | None) -> dict[str, str]:
    """check name -> message of every failed plausibility check in a case's properties (none without them)."""
    return {} if properties is None else properties.plausibility.failed_checks()


def read_accepted(folder: Path) -> dict[str, dict]:
    path = folder / ACCEPTED
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AutopipeError(f"cannot read {ACCEPTED} ({exc})", where=str(path),
                            fix="delete it and accept the cases again with `autopipe preprocess --accept CASE`"
                            ) from None
    return value if isinstance(value, dict) else {}


def is_accepted(accepted: dict[str, dict], case_id: str, checks: dict[str, str]) -> bool:
    return set(checks) <= set(accepted.get(case_id, {}).get("checks", {}))


def unaccepted_failures(folder: Path, case_ids: list[str]) -> dict[str, dict[str, str]]:
    """case -> failed checks not accepted, for the given cases (those with damaged properties are unfinished)."""
    accepted = read_accepted(folder)
    out = {}
    for case in case_ids:
        try:
            checks = failed_checks(read_properties(case_paths(folder, case)[1]))
        except AutopipeError:
            continue
        if checks and not is_accepted(accepted, case, checks):
            out[case] = checks
    return out


def accept(folder: Path, requested: list[str], failing: dict[str, dict[str, str]]) -> list[str]:
    """Record acceptance of the failed checks of `requested` cases (or `all`); returns the cases accepted."""
    names = sorted(failing) if ALL in requested else sorted(set(requested))
    unknown = [c for c in names if c not in failing]
    if unknown:
        raise AutopipeError(f"--accept names case(s) with no failed check: {', '.join(unknown)}",
                            fix=f"accept only the failed cases ({', '.join(sorted(failing)) or 'none now'}), or all")
    if not names:
        return []
    accepted = read_accepted(folder)
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for case in names:
        accepted[case] = {"checks": failing[case], "accepted_at": when, "by": "autopipe preprocess --accept"}
    write_json(folder / ACCEPTED, dict(sorted(accepted.items())))
    return names
