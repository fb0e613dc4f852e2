"""How fast `autopipe synth` is, and how big its cohorts are.

Prints: the time for an N-case 2 mm cohort with W worker processes (cold: the template is loaded in
this fresh process first), seconds per case at 2 mm and at 1 mm on one core (template already
loaded), the cohort's size on disk (and per 20 cases), and its measured effective acceleration.
Every library runs single-threaded, so the figures are per core.

    python benchmarks/synth_speed.py [--cases 24] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=24, help="cases in the 2 mm cohort (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the cohort (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="single cases timed per spacing (default %(default)s)")
    parser.add_argument("--keep", type=Path, help="write the cohort here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    import SimpleITK as sitk

    from autopipe.synth.cohort import CaseJob, SynthOptions, synthesize_case, synthesize_cohort

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    scratch = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:
        out = args.keep or scratch / "Dataset001_SynthPVL"
        options = SynthOptions(num_cases=args.cases, spacing=(2.0, 2.0, 2.0))
        started = time.monotonic()
        summary = synthesize_cohort(out, options, workers=args.workers, progress=False)
        elapsed = time.monotonic() - started
        print(f"{args.cases}-case 2 mm cohort, {args.workers} workers: {elapsed:.1f} s "
              f"(template loading included)")
        print(f"cohort on disk: {summary['bytes'] / 1e6:.1f} MB ({summary['bytes'] / 1e6 / args.cases * 20:.0f} MB "
              f"per 20 cases); k-space {_size(out / 'kspace') / 1e6:.1f} MB, images {_size(out / 'imagesTr') / 1e6:.1f}"
              f" MB, ground truth {_size(out / 'groundtruth') / 1e6:.1f} MB")
        print(f"measured effective acceleration: {summary['mean_effective_acceleration']:.2f} "
              f"(requested {options.acceleration})")
        print(f"hand function: {summary['impaired_fraction']:.0%} impaired, expected Bayes accuracy "
              f"{summary['bayes_accuracy']:.2f}")
        for spacing in ((2.0, 2.0, 2.0), (1.0, 1.0, 1.0)):
            single = SynthOptions(num_cases=1, spacing=spacing)
            seconds = [synthesize_case(CaseJob(str(scratch / f"single_{spacing[0]:g}_{i}"), single, i, "PVL_001"))[
                "seconds"] for i in range(args.repeats)]
            print(f"one case at {spacing[0]:g} mm, 1 core: {sum(seconds) / len(seconds):.1f} s "
                  f"(mean of {len(seconds)}, template loaded)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


if __name__ == "__main__":
    main()
