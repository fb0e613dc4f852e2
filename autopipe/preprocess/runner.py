"""`autopipe preprocess`: every training case of a cohort through autopipe.preprocess.case, in parallel.

Resumable: a case whose CASE.json names the current plan's digest is skipped, so a killed run picks
up where it stopped and an edited plan redoes only what it changes (`force` redoes everything); a
case that failed a plausibility check is redone on every run until it passes or is accepted, so a
fixed raw file is picked up.
A failing case is reported with its reason and never stops the others. A case whose result fails a
plausibility check (autopipe.preprocess.plausibility) is written, listed with its cause and fails
the command, until fixed or accepted (`accept`, recorded in accepted.json). raw_data is only read.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

from autopipe.cohort.dataset import DatasetSpec, load_dataset, training_case_ids
from autopipe.cohort.image_io import UnreadableImage
from autopipe.cohort.label_classes import class_order
from autopipe.errors import AutopipeError, first_line
from autopipe.executor import Workers, is_cluster, parallel_map
from autopipe.files import remove_stale_temporaries, write_json
from autopipe.layout import case_paths, data_identifier
from autopipe.paths import Workspace
from autopipe.plan.configs import PreprocessingPlan
from autopipe.plan.plans_file import load_plans
from autopipe.preprocess import acceptance
from autopipe.preprocess.acceptance import failed_checks
from autopipe.preprocess.case import CaseError, CaseJob, preprocess_case
from autopipe.preprocess.properties import CaseProperties, read_properties
from autopipe.preprocess.report import build_report, format_table
from autopipe.preprocess.storage import is_finished, plan_digest

log = logging.getLogger(__name__)

GB_PER_WORKER = 2.5  # measured peak at 1 mm is below 2 GB; the rest is headroom


@dataclass(frozen=True)
class Outcome:
    """What happened to one case: its properties, or why it failed (and the traceback, for --debug)."""

    case_id: str
    properties: CaseProperties | None = None
    error: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class PreprocessResult:
    """What `preprocess_dataset` did: where, the report (report.json) and its table, and the cases to act on."""

    folder: Path
    report: dict
    table: str
    failed: dict[str, str]  # case -> why
    tracebacks: dict[str, str]  # case -> traceback of an unexpected failure (for --debug)
    processed: int
    skipped: int
    implausible: dict[str, dict[str, str]]  # case -> failed plausibility check -> message (not accepted)
    accepted_now: list[str]

    def summary(self, dataset: str, qc: bool) -> tuple[list[str], list[str]]:
        """What the command prints: the table and a tally, then the errors (each failed check, what to do)."""
        lines = [self.table, f"{self.processed} case(s) preprocessed, {self.skipped} already done, "
                             f"{len(self.failed)} failed -> {self.folder}"]
        if qc and self.report["cases"]:
            lines.append(f"QC: {self.folder / 'qc' / 'montage.png'} (one picture per case beside it); report: "
                         f"{self.folder / 'report.json'}")
        if self.accepted_now:
            lines.append(f"accepted the failed checks of {', '.join(self.accepted_now)} (recorded in "
                         f"{self.folder / 'accepted.json'})")
        errors = [f"{case}: {message}" for case, checks in self.implausible.items() for message in checks.values()]
        if self.implausible:
            errors.append(f"error: {len(self.implausible)} case(s) failed a plausibility check (above). Fix the cause "
                          "and rerun, or, after looking at their QC pictures, accept them: "
                          + " ".join(filter(None, ["autopipe preprocess", dataset, "--accept", *self.implausible])))
        if self.failed:
            errors.append(f"error: {len(self.failed)} case(s) failed (reasons above); fix them and rerun: finished "
                          "cases are kept")
        return lines, errors


def preprocess_dataset(root: Path, workspace: Workspace, *, workers: Workers = 1, force: bool = False,
                       progress: bool = True, qc: bool = True, accept: list[str] | None = None) -> PreprocessResult:
    """Preprocess the cohort at `root` with its plans; returns the report and where everything went."""
    spec = load_dataset(root)
    plans = load_plans(workspace.plans_dir(spec.name) / "plans.json")
    plan = plans.preprocessing
    _check_plan_fits(plan, spec)
    out_root = workspace.preprocessed / spec.name
    if out_root.resolve().is_relative_to(spec.root.resolve()):
        raise AutopipeError(f"preprocessed folder {out_root} lies inside the cohort", where=str(spec.root),
                            fix="autopipe never writes into raw data: choose another --preprocessed-dir")
    folder = out_root / data_identifier(plan.space, plan.target_spacing)
    digest = plan_digest(plan)
    jobs = case_jobs(spec, plan, folder, digest, qc, ct_statistics(workspace, spec, plan))
    redo = acceptance.unaccepted_failures(folder, [job.case_id for job in jobs])  # implausible: perhaps fixed since
    todo = [job for job in jobs if force or not is_finished(folder, job.case_id, digest) or job.case_id in redo]
    if len(todo) < len(jobs):
        log.info("%d of %d cases already preprocessed with this plan: skipped (--force redoes them)",
                 len(jobs) - len(todo), len(jobs))
    if todo:  # the summaries of the set describe it again once its cases are done, never half of it
        for summary in (folder / "report.json", folder / "qc" / "montage.png"):
            summary.unlink(missing_ok=True)
    write_json(folder / "preprocessing_plan.json", {"digest": digest, "plan": plan})
    for job in todo:  # a redone case is unfinished until its task writes it again: a resubmitted task then skips it
        case_paths(folder, job.case_id)[1].unlink(missing_ok=True)
    outcomes = parallel_map(run_job, todo, workers, "preprocess", enabled=progress, memory_gb=GB_PER_WORKER,
                            lost=lost_job) if todo else []
    # a worker killed while writing leaves its temporary file; every task is collected now, so none is live
    remove_stale_temporaries(folder, every_host=is_cluster(workers))
    failures = {o.case_id: o.error for o in outcomes if o.error}
    records = [p for job in jobs if job.case_id not in failures
               and (p := read_properties(case_paths(folder, job.case_id)[1])) is not None and p.plan_digest == digest]
    failing = {r.case: checks for r in records if (checks := failed_checks(r))}
    accepted_now = acceptance.accept(folder, accept, failing) if accept else []
    report = build_report(records, failures, acceptance.read_accepted(folder))
    write_json(folder / "report.json", report)
    if qc and records:
        _montage(folder, report)
    return PreprocessResult(
        folder=folder, report=report, table=format_table(report), failed=failures,
        tracebacks={o.case_id: o.details for o in outcomes if o.details}, processed=len(todo) - len(failures),
        skipped=len(jobs) - len(todo), accepted_now=accepted_now,
        implausible={row["case"]: row["failed_checks"] for row in report["cases"]
                     if row["failed_checks"] and not row["accepted"]})


def run_job(job: CaseJob) -> Outcome:
    """One case in a worker: the properties, or the reason it failed (expected problems as plain messages).

    Idempotent: a case already finished with this plan is read back, not redone, so a task that a cluster
    resubmits after its worker died (perhaps after writing the case) is harmless.
    """
    try:
        if is_finished(job.out_dir, job.case_id, job.digest):
            return Outcome(job.case_id, properties=read_properties(case_paths(job.out_dir, job.case_id)[1]))
        return Outcome(job.case_id, properties=preprocess_case(job))
    except CaseError as exc:
        return Outcome(job.case_id, error=str(exc))
    except UnreadableImage as exc:
        return Outcome(job.case_id, error=f"cannot read an image of this case: {exc}; check or replace the file")
    except AutopipeError as exc:
        return Outcome(job.case_id, error=str(exc).replace("\n", " "))
    except MemoryError:
        return Outcome(job.case_id, error="ran out of memory; rerun with fewer workers (-j 1)")
    except Exception as exc:  # a bug: report it for this case and let the others finish
        return Outcome(job.case_id, error=f"unexpected {type(exc).__name__}: {first_line(exc)} (a bug? rerun with "
                                          "--debug for the traceback and report it)",
                       details=traceback.format_exc())


def lost_job(job: CaseJob, why: str) -> Outcome:
    """The outcome of a case whose cluster workers kept dying while preprocessing it."""
    return Outcome(job.case_id, error=f"not preprocessed: {why}")


def _check_plan_fits(plan: PreprocessingPlan, spec: DatasetSpec) -> None:
    if plan.num_channels != spec.num_channels:
        raise AutopipeError(f"the plan has {plan.num_channels} channel(s) but dataset.json names "
                            f"{spec.num_channels}", where="plans.json: preprocessing.bias_field",
                            fix="run `autopipe plan` again after changing the cohort")


def case_jobs(spec: DatasetSpec, plan: PreprocessingPlan, folder: Path, digest: str, qc: bool,
          ct_stats: dict[int, dict]) -> list[CaseJob]:
    """One job per training case of the cohort, writing into `folder` (k-space beside it, in kspace/)."""
    kspace_dir = folder.parent / "kspace" if spec.kspace is not None else None
    jobs = []
    for case_id in training_case_ids(spec):
        label = spec.label_path(case_id)
        kspace = spec.kspace_path(case_id)
        jobs.append(CaseJob(
            case_id=case_id,
            images=tuple(spec.image_path(case_id, k) for k in range(spec.num_channels)),
            label=label if label.is_file() else None,
            out_dir=folder, plan=plan, digest=digest,
            kspace=kspace if kspace is not None and kspace.is_file() else None,
            kspace_dir=kspace_dir, ct_stats=ct_stats, qc=qc, classes=class_order(spec.labels)))
    return jobs


def ct_statistics(workspace: Workspace, spec: DatasetSpec, plan: PreprocessingPlan) -> dict[int, dict]:
    """Cohort foreground intensity statistics per CT channel, from fingerprint.json."""
    channels = [k for k, scheme in enumerate(plan.normalization) if scheme == "ct"]
    if not channels:
        return {}
    path = workspace.plans_dir(spec.name) / "fingerprint.json"
    try:
        intensity = json.loads(path.read_text())["intensity"]
        return {k: intensity[spec.channel_names[k]]["foreground"] for k in channels}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AutopipeError(f"CT channels need the cohort's intensity statistics, which are missing ({exc})",
                            where=str(path), fix="run `autopipe plan` again") from None


def _montage(folder: Path, report: dict) -> None:
    from autopipe.preprocess import qc

    tiles = []
    for row in report["cases"]:
        views = folder / "qc" / "views" / f"{row['case']}.npz"
        if views.is_file():
            notes = [*(f"FAILED {check}" for check in row["failed_checks"]), *row["flags"]]
            tiles.append((row["case"], qc.load_views(views), "; ".join(notes) or None))
    if tiles:
        qc.write_montage(folder / "qc" / "montage.png", tiles)
