"""The report's provenance: software versions, seeds, plan digests and the training runs' own first log lines."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata

from autopipe import __version__
from autopipe.report.context import ReportContext, read_json_or_none
from autopipe.report.document import Section
from autopipe.report.model_sections import configuration_dirs, plan_digest

PACKAGES = ("torch", "numpy", "SimpleITK", "nibabel", "scipy", "antspyx", "deepbet")


def provenance_section(ctx: ReportContext) -> Section:
    """What made these results, as far as the files record it; what they do not record is said so."""
    section = Section("provenance", "Provenance")
    facts: list[tuple[str, object]] = [
        ("report written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("autopipe", __version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()}, {platform.system()})"),
        *((name, _version(name)) for name in PACKAGES),
    ]
    dataset = read_json_or_none(ctx.root / "dataset.json")
    synthetic = dataset.get("synthetic") if isinstance(dataset, dict) else None
    if isinstance(synthetic, dict):
        facts.append(("synthetic cohort", f"{synthetic.get('generator')}, seed {synthetic.get('seed')}"))
    plans_path = ctx.plans_dir / "plans.json"
    plans = read_json_or_none(plans_path)
    if isinstance(plans, dict):
        facts.append(("plans.json sha256", plan_digest(plans_path)))
        seed = ((plans.get("preprocessing") or {}).get("registration_seed") or {}).get("value")
        facts.append(("registration seed (plan)", seed))
        hardware = plans.get("hardware") or {}
        facts.append(("planned for", ", ".join(f"{k} {v.get('value')}" for k, v in hardware.items()
                                               if isinstance(v, dict))))
    for path in sorted(ctx.preprocessed_dir.glob("*/preprocessing_plan.json")) if ctx.preprocessed_dir.is_dir() else []:
        record = read_json_or_none(path)
        if isinstance(record, dict):
            facts.append((f"preprocessing digest ({path.parent.name})", record.get("digest")))
    hand = read_json_or_none(ctx.results_dir / "hand_function" / "summary.json")
    if isinstance(hand, dict) and isinstance(hand.get("bootstrap"), dict):
        facts.append(("bootstrap seed (hand function)", hand["bootstrap"].get("seed")))
    facts.append(("training seed", "not recorded in the results (`autopipe train --seed`, default 12345)"))
    section.facts(facts)
    runs = _training_runs(ctx)
    if runs:
        section.table(["run", "how it started (first line of training.log)"], runs,
                      caption="training runs, as their logs record them")
    else:
        section.text("No training log yet: the commands run are recorded once `autopipe train` has run.",
                     style="note")
    return section


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _training_runs(ctx: ReportContext) -> list[list[str]]:
    logs = [log for config in configuration_dirs(ctx) for log in sorted(config.glob("fold_*/training.log"))]
    logs += sorted(ctx.results_dir.glob("reconstruction/*/fold_*/training.log"))
    rows = []
    for log in logs:
        try:
            with log.open(encoding="utf-8", errors="replace") as handle:
                first = handle.readline().strip()
        except OSError:
            continue
        rows.append([log.parent.relative_to(ctx.results_dir).as_posix(), first or "(empty)"])
    return rows
