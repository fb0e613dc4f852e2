"""`autopipe demo`: the whole pipeline on built-in data, in its own folder so real work is never touched.

Today: synthesize a small 2 mm cohort, check it, plan it, preprocess it, and say where everything
went. Each later stage adds its step here. Re-running reuses what an earlier run finished.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from autopipe.errors import AutopipeError
from autopipe.paths import Workspace

log = logging.getLogger("autopipe")

DEMO_DATASET = "Dataset001_SynthPVL"


def run_demo(workdir: Path, cases: int = 16, workers: int = 1, seed: int = 0) -> int:
    """Run every available stage on a synthetic cohort under `workdir`; return the exit status."""
    from autopipe.cohort.check import check_cohort
    from autopipe.plan.planner import plan_dataset
    from autopipe.preprocess.runner import preprocess_dataset
    from autopipe.synth.cohort import SynthOptions
    from autopipe.synth.output import synthesize_atomically

    workdir = workdir.expanduser().resolve()
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans",
                   preprocessed=workdir / "preprocessed", results=workdir / "results")
    cohort = ws.raw / DEMO_DATASET
    started = time.monotonic()

    _step(1, f"synthesize {cases} cases at 2 mm into {cohort}")
    if (cohort / "groundtruth" / "generator.json").is_file():
        log.info("   already there from an earlier run; reusing it (delete the folder to start over)")
    else:
        options = SynthOptions(num_cases=cases, seed=seed, spacing=(2.0, 2.0, 2.0), kspace_slices=8)
        summary = synthesize_atomically(cohort, options, workers=workers)
        for key, value in summary.items():
            log.info("   %-28s %s", key, value)

    _step(2, "check the cohort")
    problems = check_cohort(cohort, workers=workers)
    errors = [p for p in problems if p.severity == "error"]
    log.info("   %d error(s), %d warning(s)", len(errors), len(problems) - len(errors))
    if errors:
        raise AutopipeError(f"the demo cohort failed its check ({len(errors)} errors)", where=str(cohort),
                            fix="run `autopipe check` on it to see them; this is a bug in autopipe")

    _step(3, "fingerprint and plan")
    result = plan_dataset(cohort, ws, workers=workers)
    log.info("%s", result["summary"])

    _step(4, "preprocess: skull strip, N4, register to MNI152, resample, normalize (finished cases are kept)")
    pre = preprocess_dataset(cohort, ws, workers=workers)
    log.info("%s", pre["table"])
    if pre["failed"]:
        raise AutopipeError(f"{len(pre['failed'])} demo case(s) failed to preprocess (reasons above)",
                            where=str(pre["folder"]), fix="this is a bug in autopipe; please report it")

    log.info("\nDone in %.0f s. Where everything went:", time.monotonic() - started)
    log.info("   cohort        %s", cohort)
    log.info("   ground truth  %s", cohort / "groundtruth")
    log.info("   plans         %s", ws.plans_dir(DEMO_DATASET))
    log.info("   preprocessed  %s", pre["folder"])
    log.info("   QC pictures   %s (montage.png: every case at a glance)", pre["folder"] / "qc")
    log.info("Next: look at the QC montage and read plans.json (every value says why it was chosen), or run your"
             " own cohort: `autopipe check`, `autopipe plan`, then `autopipe preprocess`.")
    return 0


def _step(number: int, text: str) -> None:
    log.info("\n[%d] %s", number, text)
