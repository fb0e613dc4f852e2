"""Gather every section of a cohort's report and render it with jinja2 into one self-contained HTML file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import jinja2
import markupsafe

from autopipe import __version__
from autopipe.errors import AutopipeError, first_line
from autopipe.executor import Workers
from autopipe.files import write_text_atomic
from autopipe.paths import Workspace
from autopipe.report.cohort_sections import check_section, cohort_section, preprocessing_section
from autopipe.report.context import ReportContext
from autopipe.report.document import Section
from autopipe.report.model_sections import crossval_section, plan_section, postprocessing_section, training_section
from autopipe.report.provenance import provenance_section
from autopipe.report.summary import summary_rows
from autopipe.report.task_sections import hand_function_section, reconstruction_section

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
REPORT_FILE = "report.html"
BACKTICKED = re.compile(r"`([^`<>]+)`")


def default_report_path(workspace: Workspace, dataset: str) -> Path:
    """results/DATASET/report.html"""
    return workspace.results / dataset / REPORT_FILE


def build_report(root: Path, workspace: Workspace, *, run_check: bool = True, workers: Workers = 1) -> dict:
    """Everything the template shows: {"dataset", "version", "folders", "summary", "sections"}, in reading order."""
    ctx = ReportContext(Path(root), workspace)
    check, check_counts = _guarded(ctx, "check", "Check", "check", lambda: check_section(ctx, run_check, workers))
    preprocessing, counts = _guarded(ctx, "preprocessing", "Preprocessing and QC", "preprocess",
                                     lambda: preprocessing_section(ctx))
    crossval, decision = _guarded(ctx, "crossval", "Cross-validation and the configuration decision", "evaluate",
                                  lambda: crossval_section(ctx))
    hand, hand_evidence = _guarded(ctx, "hand-function", "Hand function", "evaluate",
                                   lambda: hand_function_section(ctx))
    sections = [
        _guarded(ctx, "cohort", "Cohort", "check", lambda: (cohort_section(ctx), None))[0], check, preprocessing,
        _guarded(ctx, "plan", "Plan", "plan", lambda: (plan_section(ctx), None))[0],
        _guarded(ctx, "training", "Training", "train 0", lambda: (training_section(ctx), None))[0], crossval,
        _guarded(ctx, "postprocessing", "Postprocessing", "evaluate", lambda: (postprocessing_section(ctx), None))[0],
        _guarded(ctx, "reconstruction", "Reconstruction comparison", "evaluate",
                 lambda: (reconstruction_section(ctx), None))[0], hand,
        _guarded(ctx, "provenance", "Provenance", "plan", lambda: (provenance_section(ctx), None))[0]]
    return {"dataset": ctx.dataset, "version": __version__,
            "folders": {"cohort": ctx.root, "plans": workspace.plans, "preprocessed": workspace.preprocessed,
                        "results": workspace.results},
            "summary": summary_rows(ctx, check_counts, counts, decision, hand_evidence), "sections": sections}


def _guarded(ctx: ReportContext, section_id: str, title: str, command: str,
             build: Callable[[], tuple[Section, dict | None]]) -> tuple[Section, dict | None]:
    """A section, or, when a file it reads has an unexpected shape (edited by hand, from another version), a section
    that says so and which command writes the files again: one odd file never costs the whole report."""
    try:
        return build()
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        section = Section(section_id, title)
        section.missing(f"its files could not be read ({type(exc).__name__}: {first_line(exc)})",
                        ctx.command(command))
        return section, None


def render_html(report: dict) -> str:
    """The report as HTML: jinja2 with autoescaping, so every text from the files is shown, never interpreted."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["code"] = inline_code
    return environment.get_template(TEMPLATE).render(**report)


def inline_code(text: object) -> markupsafe.Markup:
    """Escape `text`, then show its `backticked` parts (commands, file names) as <code>."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(BACKTICKED.sub(r"<code>\1</code>", escaped))


def write_report(root: Path, workspace: Workspace, path: Path | None = None, *, run_check: bool = True,
                 workers: Workers = 1) -> Path:
    """Render the cohort's report and write it atomically (default results/DATASET/report.html); the path."""
    path = Path(path) if path is not None else default_report_path(workspace, Path(root).name)
    if path.is_dir():
        raise AutopipeError(f"{path} is a folder", where="report -o",
                            fix=f"name a file, e.g. {path / REPORT_FILE}")
    html = render_html(build_report(root, workspace, run_check=run_check, workers=workers))
    try:
        return write_text_atomic(path, html)
    except OSError as exc:
        raise AutopipeError(f"cannot write the report ({exc.strerror or exc})", where=str(path),
                            fix="choose a folder you can write to with -o FILE") from None
