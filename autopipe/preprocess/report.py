"""The preprocessing report: per-case timings and volumes, failed checks and flags for a look at the QC picture.

Each case carries its own plausibility findings (autopipe.preprocess.plausibility: failed checks with
their cause, and flags). Beside them, the cohort itself is a reference: a brain volume far from the
cohort's median usually means a failed skull strip (a leak into the orbits or scalp, or a clipped
cerebellum). Nothing is corrected silently.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from autopipe.preprocess.acceptance import failed_checks, is_accepted
from autopipe.preprocess.contrast import contrast_findings
from autopipe.preprocess.properties import CaseProperties

BRAIN_VOLUME_TOLERANCE = 0.25  # relative to the cohort median; adult brains vary by about +-15%
MIN_CASES_FOR_MEDIAN = 3


def case_flags(record: CaseProperties, median_brain_ml: float | None,
               others: Sequence[CaseProperties] = ()) -> list[str]:
    """Why a case deserves a look, failed checks aside (empty when nothing is unusual). `others`: the rest of the
    cohort, whose tissue contrast the case's is compared with (autopipe.preprocess.contrast)."""
    flags = record.plausibility.flags()
    if record.contrast is not None:
        cohort = [o.contrast for o in others if o.contrast is not None]
        flags += [f.message for f in contrast_findings(record.contrast, cohort, reference_name="other cases")]
    brain = record.brain_volume_ml
    if median_brain_ml:
        change = brain / median_brain_ml - 1
        if abs(change) > BRAIN_VOLUME_TOLERANCE:
            flags.append(f"brain volume {abs(change):.0%} {'above' if change > 0 else 'below'} the cohort median "
                         f"({brain:.0f} vs {median_brain_ml:.0f} ml): check the skull strip")
    return flags


def build_report(records: list[CaseProperties], failures: dict[str, str], accepted: dict[str, dict] | None = None
                 ) -> dict:
    """Rows for every finished case (failed checks, acceptance and flags included), failures, and the cohort's
    summary figures. `accepted` is accepted.json (autopipe.preprocess.acceptance)."""
    accepted = accepted or {}
    brains = [r.brain_volume_ml for r in records]
    median = statistics.median(brains) if len(brains) >= MIN_CASES_FOR_MEDIAN else None
    rows = []
    for record in sorted(records, key=lambda r: r.case):
        rows.append({"case": record.case, "seconds": record.seconds, "timings": record.timings,
                     "brain_volume_ml": record.brain_volume_ml, "lesion_volume_ml": record.lesion_volume_ml,
                     "registration_dice": record.registration_dice, "stripped_with": record.anatomy.stripped_with,
                     "failed_checks": (checks := failed_checks(record)),
                     "accepted": bool(checks) and is_accepted(accepted, record.case, checks),
                     "flags": case_flags(record, median, [r for r in records if r is not record])})
    steps = list(dict.fromkeys(step for r in rows for step in r["timings"]))  # in the order the steps ran
    return {
        "cases": rows,
        "failed": dict(sorted(failures.items())),
        "summary": {
            "finished": len(rows),
            "failed": len(failures),
            "flagged": sum(bool(r["flags"]) for r in rows),
            "failed_checks": sum(bool(r["failed_checks"]) and not r["accepted"] for r in rows),
            "accepted": sum(r["accepted"] for r in rows),
            "median_brain_volume_ml": median,
            "mean_seconds_per_step": {s: round(statistics.fmean(r["timings"].get(s, 0.0) for r in rows), 2)
                                      for s in steps} if rows else {},
            "mean_seconds_per_case": round(statistics.fmean(r["seconds"] for r in rows), 2) if rows else None,
        },
        "definitions": {
            "brain_volume_ml": "voxels in the brain mask x voxel volume, in the native scan",
            "lesion_volume_ml": "voxels labelled lesion x voxel volume, in the native scan",
            "registration_dice": "Dice of the registered brain mask with the template's brain mask (2 mm); null when "
                                 "the case is not registered (no whole brain in view)",
            "stripped_with": "what made the brain mask: deepbet, or none (the scan's own brain or non-zero region)",
            "failed_checks": "plausibility checks the case failed, with the likely cause and the fix "
                             "(autopipe.preprocess.plausibility); the command fails until fixed or accepted",
            "accepted": "the failed checks were accepted with `autopipe preprocess --accept` (accepted.json)",
            "flags": f"plausibility flags, brain volume more than {BRAIN_VOLUME_TOLERANCE:.0%} from the cohort "
                     f"median (>= {MIN_CASES_FOR_MEDIAN} cases), and a tissue contrast unlike the other cases' "
                     "(autopipe.preprocess.contrast)",
        },
    }


def format_table(report: dict) -> str:
    """The report as a terminal table: one line per case, then the failures and the mean step times."""
    width = max([14, *(len(r["case"]) + 2 for r in report["cases"]), *(len(c) + 2 for c in report["failed"])])
    header = f"{'case':<{width}}{'brain ml':>9}{'lesion ml':>10}{'reg Dice':>9}{'seconds':>9}  {'strip':<8} flags"
    lines = [header, "-" * len(header)]
    for row in report["cases"]:
        lesion = "-" if row["lesion_volume_ml"] is None else f"{row['lesion_volume_ml']:.2f}"
        dice = "-" if row["registration_dice"] is None else f"{row['registration_dice']:.3f}"
        state = "accepted: " if row["accepted"] else "IMPLAUSIBLE: " if row["failed_checks"] else ""
        notes = "; ".join([*row["failed_checks"].values(), *row["flags"]])
        lines.append(f"{row['case']:<{width}}{row['brain_volume_ml']:>9.0f}{lesion:>10}{dice:>9}"
                     f"{row['seconds']:>9.1f}  {row['stripped_with'] or '-':<8} {state}{notes}")
    for case, reason in report["failed"].items():
        lines.append(f"{case:<{width}}{'FAILED':>9}  {reason}")
    summary = report["summary"]
    if summary["mean_seconds_per_step"]:
        steps = ", ".join(f"{k} {v:g}" for k, v in summary["mean_seconds_per_step"].items())
        lines.append(f"mean seconds per case {summary['mean_seconds_per_case']:g}: {steps}")
    return "\n".join(lines)
