"""The report's sections about the data: the cohort, the check's findings, and preprocessing with its QC."""

from __future__ import annotations

import json

from autopipe.executor import Workers
from autopipe.report.context import ReportContext, read_json_or_none
from autopipe.report.document import Section, fmt

CHECK_CACHE_VERSION_KEY = "version"


def cohort_section(ctx: ReportContext) -> Section:
    """Cases, channels, labels and spacings (dataset.json, fingerprint.json), lesion and hand-function balance."""
    section = Section("cohort", "Cohort")
    dataset = read_json_or_none(ctx.root / "dataset.json")
    if not isinstance(dataset, dict):
        section.missing(f"{ctx.root / 'dataset.json'} cannot be read", ctx.command("check"))
        return section
    channels = dataset.get("channel_names", {})
    labels = dataset.get("labels", {})
    section.facts([
        ("folder", str(ctx.root)),
        ("name", dataset.get("name", ctx.dataset)),
        ("description", dataset.get("description", "")),
        ("training cases (dataset.json)", dataset.get("numTraining")),
        ("channels", ", ".join(f"{k}: {v}" for k, v in channels.items())),
        ("labels", ", ".join(f"{k} = {v}" for k, v in labels.items())),
        ("k-space", "yes" if dataset.get("kspace") else "no"),
        ("clinical table", (dataset.get("clinical") or {}).get("file", "none")),
    ], caption="dataset.json")
    fingerprint = read_json_or_none(ctx.plans_dir / "fingerprint.json")
    if not isinstance(fingerprint, dict):
        section.missing("the fingerprint (measured spacings, shapes, lesions) is not there yet",
                        ctx.command("plan"))
        return section
    geometry = fingerprint.get("geometry") or {}
    lesions = fingerprint.get("lesions") or {}
    anatomy = fingerprint.get("anatomy") or {}
    facts = [
        ("cases measured", fingerprint.get("num_cases")),
        ("median spacing (mm, RAS)", _triple(geometry.get("median_spacing_ras"))),
        ("spacing range (mm)", _spacing_range(geometry.get("spacing_ras"))),
        ("median shape after crop", _triple(geometry.get("median_shape_after_crop_ras"), 0)),
        ("orientations", ", ".join(f"{k}: {v}" for k, v in (geometry.get("orientations") or {}).items())),
        ("lesion labels", fingerprint.get("lesion_labels")),
    ]
    if lesions:
        facts += [
            ("lesions in all cases", lesions.get("total_count")),
            ("median lesions per case", fmt(lesions.get("median_count_per_case"), 1)),
            ("cases without lesions", lesions.get("cases_without_lesions")),
            ("median lesion volume (mm³)", fmt(lesions.get("median_volume_mm3"), 1)),
            ("median lesion load per case (mm³)", fmt(lesions.get("median_total_load_mm3"), 1)),
        ]
    if anatomy:
        facts += [("whole brain in view", f"{anatomy.get('whole_brain_cases')} of {anatomy.get('cases')}"),
                  ("partial field of view", ", ".join(anatomy.get("partial_cases") or []) or "none"),
                  ("need skull stripping", len(anatomy.get("needs_strip_cases") or []))]
    clinical = fingerprint.get("clinical")
    if clinical:
        facts.append(("hand function", f"{clinical.get('impaired')} {clinical.get('positive', 'impaired')}, "
                                       f"{clinical.get('good')} {clinical.get('negative', 'good')}, "
                                       f"{len(clinical.get('missing') or [])} missing"))
    kspace = fingerprint.get("kspace")
    if kspace:
        facts.append(("k-space", f"{kspace.get('cases')} cases, {kspace.get('coils')} coils, matrix "
                                 f"{_triple(kspace.get('matrix'), 0)}, acceleration "
                                 f"{fmt(kspace.get('effective_acceleration_median'), 2)} (median)"))
    section.facts(facts, caption="measured by `autopipe plan` (plans/DATASET/fingerprint.json)")
    return section


def check_section(ctx: ReportContext, run_check: bool = True, workers: Workers = 1) -> tuple[Section, dict | None]:
    """`autopipe check`'s errors and warnings, run here (cases unchanged since the last check are not read again).
    Also returns {"errors", "warnings"} for the summary (None when skipped)."""
    section = Section("check", "Check")
    if not run_check:
        section.missing("the check was skipped (--no-check)", ctx.command("check"))
        return section, None
    from autopipe.cohort.check import check_cohort, format_problem

    problems = check_cohort(ctx.root, workers=workers, progress=False, cache=_check_cache(ctx))
    errors = [p for p in problems if p.severity == "error"]
    section.text(f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s) found by `autopipe check` "
                 "when this report was written.", style="lead")
    if problems:
        section.items([("bad" if p.severity == "error" else "warn", format_problem(p)) for p in problems])
    else:
        section.text("The cohort is ready for `autopipe plan`.")
    return section, {"errors": len(errors), "warnings": len(problems) - len(errors)}


def _check_cache(ctx: ReportContext) -> dict:
    """The per-case results the last gated command kept (plans/.check_cache), copied: the report never writes it."""
    from autopipe.cohort.gate import CACHE_VERSION, cache_path

    try:
        cache = json.loads(cache_path(ctx.workspace.plans, ctx.dataset).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get(CHECK_CACHE_VERSION_KEY) != CACHE_VERSION:
        return {}
    cases = cache.get("cases")
    return dict(cases) if isinstance(cases, dict) else {}


def preprocessing_section(ctx: ReportContext) -> tuple[Section, dict | None]:
    """Per-case outcome with failed and flagged cases first, their causes and QC pictures, then the montage.
    Also returns the counts for the summary (None when nothing is preprocessed)."""
    section = Section("preprocessing", "Preprocessing and QC")
    reports = sorted(ctx.preprocessed_dir.glob("*/report.json")) if ctx.preprocessed_dir.is_dir() else []
    if not reports:
        section.missing("nothing is preprocessed yet", ctx.command("preprocess"))
        return section, None
    counts = {"ok": 0, "flagged": 0, "failed": 0}
    for path in reports:
        report = read_json_or_none(path)
        if not isinstance(report, dict):
            section.missing(f"{path} cannot be read", ctx.command("preprocess"))
            continue
        folder = path.parent
        rows, styles = _case_rows(report, counts)
        section.text(f"{folder.name}: {len(report.get('cases', []))} case(s) finished, "
                     f"{len(report.get('failed', {}))} failed ({folder})", style="lead")
        section.table(["case", "state", "cause / flags", "brain ml", "lesion ml", "reg. Dice", "strip", "s"],
                      rows, caption=f"every case, failed and flagged first ({path.name})", row_styles=styles)
        for row in _needing_a_look(report):
            section.figure(folder / "qc" / f"{row['case']}.png", f"{row['case']}: " + "; ".join(
                [*row.get("failed_checks", {}).values(), *row.get("flags", [])]), size="half")
        if not section.figure(folder / "qc" / "montage.png", "QC montage: every case at a glance (qc/montage.png)"):
            section.missing("no QC montage (preprocessing ran with --no-qc)",
                            ctx.command("preprocess") + " --force")
    return section, counts


def _case_rows(report: dict, counts: dict[str, int]) -> tuple[list[list], list[str]]:
    """Table rows and their styles, failed first, then flagged, then the rest (case order within each); counts the
    states into `counts`."""
    ranked = []  # (rank, style, row)
    for case, why in sorted((report.get("failed") or {}).items()):
        ranked.append((0, "bad", [case, "FAILED", why, None, None, None, None, None]))
        counts["failed"] += 1
    for row in report.get("cases", []):
        checks, flags = row.get("failed_checks") or {}, row.get("flags") or []
        if checks and not row.get("accepted"):
            rank, style, state, count = 0, "bad", "implausible", "failed"
        elif checks or flags:
            rank, style, state, count = 1, "warn", "accepted" if checks else "flagged", "flagged"
        else:
            rank, style, state, count = 2, "", "ok", "ok"
        counts[count] += 1
        ranked.append((rank, style, [row.get("case"), state, "; ".join([*checks.values(), *flags]) or "–",
                                     fmt(row.get("brain_volume_ml"), 0), fmt(row.get("lesion_volume_ml"), 2),
                                     fmt(row.get("registration_dice"), 3), row.get("stripped_with"),
                                     fmt(row.get("seconds"), 0)]))
    ranked.sort(key=lambda r: r[0])  # stable: case order within each state
    return [r[2] for r in ranked], [r[1] for r in ranked]


def _needing_a_look(report: dict) -> list[dict]:
    """Cases with failed checks (unaccepted first), then flagged ones: whose QC pictures to show."""
    rows = [r for r in report.get("cases", []) if r.get("failed_checks") or r.get("flags")]
    return sorted(rows, key=lambda r: (not r.get("failed_checks") or bool(r.get("accepted")),
                                       not r.get("failed_checks")))


def _triple(values: object, digits: int = 2) -> str:
    if not isinstance(values, list | tuple):
        return "n/a"
    return " × ".join(fmt(float(v), digits) for v in values)


def _spacing_range(spacings: object) -> str:
    if not isinstance(spacings, list) or not spacings:
        return "n/a"
    flat = [float(v) for s in spacings for v in s]
    return f"{fmt(min(flat), 2)} – {fmt(max(flat), 2)}"
