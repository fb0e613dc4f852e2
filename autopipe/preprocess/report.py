"""The preprocessing report: per-case timings and volumes, with outliers flagged for a look at the QC picture.

A brain volume far from the cohort's median usually means a failed skull strip (a leak into the
orbits or scalp, or a clipped cerebellum); a low overlap between the registered brain mask and the
template's means a failed registration. Both are flagged, never corrected silently.
"""

from __future__ import annotations

import statistics

BRAIN_VOLUME_TOLERANCE = 0.25  # relative to the cohort median; adult brains vary by about +-15%
MIN_CASES_FOR_MEDIAN = 3
MIN_REGISTRATION_DICE = 0.90  # Affine to MNI typically reaches 0.95-0.97 on the warped brain mask


def case_flags(record: dict, median_brain_ml: float | None) -> list[str]:
    """Why a case deserves a look (empty when nothing is unusual)."""
    flags = []
    brain = record.get("brain_volume_ml")
    if median_brain_ml and brain is not None:
        change = brain / median_brain_ml - 1
        if abs(change) > BRAIN_VOLUME_TOLERANCE:
            flags.append(f"brain volume {abs(change):.0%} {'above' if change > 0 else 'below'} the cohort median "
                         f"({brain:.0f} vs {median_brain_ml:.0f} ml): check the skull strip")
    dice = record.get("registration_dice")
    if dice is not None and dice < MIN_REGISTRATION_DICE:
        flags.append(f"brain overlaps the template's by only {dice:.2f} (Dice) after registration: check the "
                     "registration")
    return flags


def build_report(records: list[dict], failures: dict[str, str]) -> dict:
    """Rows for every finished case (flags included), failures, and the cohort's summary figures."""
    brains = [r["brain_volume_ml"] for r in records if r.get("brain_volume_ml") is not None]
    median = statistics.median(brains) if len(brains) >= MIN_CASES_FOR_MEDIAN else None
    rows = []
    for record in sorted(records, key=lambda r: r["case"]):
        rows.append({"case": record["case"], "seconds": record["seconds"], "timings": record["timings"],
                     "brain_volume_ml": record["brain_volume_ml"], "lesion_volume_ml": record["lesion_volume_ml"],
                     "registration_dice": record["registration_dice"], "flags": case_flags(record, median)})
    steps = list(dict.fromkeys(step for r in rows for step in r["timings"]))  # in the order the steps ran
    return {
        "cases": rows,
        "failed": dict(sorted(failures.items())),
        "summary": {
            "finished": len(rows),
            "failed": len(failures),
            "flagged": sum(bool(r["flags"]) for r in rows),
            "median_brain_volume_ml": median,
            "mean_seconds_per_step": {s: round(statistics.fmean(r["timings"].get(s, 0.0) for r in rows), 2)
                                      for s in steps} if rows else {},
            "mean_seconds_per_case": round(statistics.fmean(r["seconds"] for r in rows), 2) if rows else None,
        },
        "definitions": {
            "brain_volume_ml": "voxels in the brain mask x voxel volume, in the native scan",
            "lesion_volume_ml": "voxels labelled lesion x voxel volume, in the native scan",
            "registration_dice": "Dice of the registered brain mask with the template's brain mask (2 mm)",
            "flags": f"brain volume more than {BRAIN_VOLUME_TOLERANCE:.0%} from the cohort median (>= "
                     f"{MIN_CASES_FOR_MEDIAN} cases), or registration Dice below {MIN_REGISTRATION_DICE}",
        },
    }


def format_table(report: dict) -> str:
    """The report as a terminal table: one line per case, then the failures and the mean step times."""
    header = f"{'case':<14}{'brain ml':>9}{'lesion ml':>10}{'reg Dice':>9}{'seconds':>9}  flags"
    lines = [header, "-" * len(header)]
    for row in report["cases"]:
        lesion = "-" if row["lesion_volume_ml"] is None else f"{row['lesion_volume_ml']:.2f}"
        lines.append(f"{row['case']:<14}{row['brain_volume_ml']:>9.0f}{lesion:>10}{row['registration_dice']:>9.3f}"
                     f"{row['seconds']:>9.1f}  {'; '.join(row['flags'])}")
    for case, reason in report["failed"].items():
        lines.append(f"{case:<14}{'FAILED':>9}  {reason}")
    summary = report["summary"]
    if summary["mean_seconds_per_step"]:
        steps = ", ".join(f"{k} {v:g}" for k, v in summary["mean_seconds_per_step"].items())
        lines.append(f"mean seconds per case {summary['mean_seconds_per_case']:g}: {steps}")
    return "\n".join(lines)
