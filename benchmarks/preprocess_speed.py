"""Preprocessing benchmark: seconds per step and peak memory per case at 1 and 2 mm, and skull-strip Dice.

    python benchmarks/preprocess_speed.py [--cases 2] [--spacings 1,2] [--channels FLAIR] [--workdir DIR]

For each spacing, a synthetic cohort with skull is made (or reused from --workdir), planned, and each
case preprocessed in a fresh process of its own (one worker, two threads for N4 and deepbet, one for
antspyx), so its peak resident memory is the process's own. Skull stripping (deepbet) is scored against
the generator's brain masks on every channel. Real heads, with the packages' own reference masks, are
benchmarks/real_heads.py's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--spacings", default="1,2")
    parser.add_argument("--channels", default="FLAIR", help="e.g. FLAIR or FLAIR,T1")
    parser.add_argument("--workdir", type=Path, default=None, help="keep cohorts here to rerun faster")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_bench_"))
    from autopipe.runtime import set_threads

    set_threads(2)
    dice_rows = []
    for spacing in (float(s) for s in args.spacings.split(",")):
        cohort, ws = _cohort(workdir, spacing, args.cases, tuple(args.channels.split(",")))
        rows = [_timed_case(cohort, ws, case) for case in _case_ids(cohort)]
        _print_timings(spacing, rows)
        dice_rows += _strip_dice(cohort, spacing)
    _print_dice(dice_rows)


def _cohort(workdir: Path, spacing: float, cases: int, channels: tuple[str, ...]):
    from autopipe.cli import main as cli
    from autopipe.paths import Workspace
    from autopipe.synth.cohort import SynthOptions
    from autopipe.synth.output import synthesize_atomically

    base = workdir / f"{spacing:g}mm_{'_'.join(channels)}"
    ws = Workspace(raw=base / "raw_data", plans=base / "plans", preprocessed=base / "preprocessed",
                   results=base / "results")
    cohort = ws.raw / "Dataset001_Bench"
    if not (cohort / "dataset.json").is_file():
        options = SynthOptions(num_cases=cases, spacing=(spacing,) * 3, channels=channels, tasks=("segmentation",))
        synthesize_atomically(cohort, options, workers=2, progress=False)
    cli(["plan", "--raw-dir", str(ws.raw), "--plans-dir", str(ws.plans), "-q", "--throughput-gflops", "100"])
    return cohort, ws


def _case_ids(cohort: Path) -> list[str]:
    from autopipe.cohort.dataset import load_dataset, training_case_ids

    return training_case_ids(load_dataset(cohort))


def _timed_case(cohort: Path, ws, case: str) -> dict:
    """Preprocess one case (forced) in a fresh process; its step timings and peak memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(cohort, ws, case, queue))
    started = time.perf_counter()
    process.start()
    result = queue.get()
    process.join()
    result["wall"] = time.perf_counter() - started
    return result


def _child(cohort: Path, ws, case: str, queue) -> None:
    from autopipe.runtime import set_threads

    set_threads(2)
    from autopipe.cohort.dataset import load_dataset
    from autopipe.layout import data_identifier
    from autopipe.plan.plans_file import load_plans
    from autopipe.preprocess.case import preprocess_case
    from autopipe.preprocess.runner import case_jobs
    from autopipe.preprocess.storage import plan_digest

    spec = load_dataset(cohort)
    plan = load_plans(ws.plans_dir(spec.name) / "plans.json").preprocessing
    folder = ws.preprocessed / spec.name / data_identifier(plan.space, plan.target_spacing)
    job = next(j for j in case_jobs(spec, plan, folder, plan_digest(plan), True, {}) if j.case_id == case)
    properties = preprocess_case(job)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    queue.put({"case": case, "timings": properties.timings, "seconds": properties.seconds, "peak_gb": peak_gb,
               "shape": list(properties.native.shape)})


def _print_timings(spacing: float, rows: list[dict]) -> None:
    steps = list(rows[0]["timings"])
    print(f"\n{spacing:g} mm, {len(rows)} case(s), native shape {rows[0]['shape']}: seconds per step (mean)")
    for step in steps:
        print(f"  {step:<12} {statistics.fmean(r['timings'][step] for r in rows):6.2f}")
    print(f"  {'total':<12} {statistics.fmean(r['seconds'] for r in rows):6.2f}   (process wall incl. imports "
          f"{statistics.fmean(r['wall'] for r in rows):.1f})")
    print(f"  peak memory per worker {max(r['peak_gb'] for r in rows):.2f} GB")


def _strip_dice(cohort: Path, spacing: float) -> list[tuple[str, float, float]]:
    from autopipe.cohort.dataset import load_dataset
    from autopipe.cohort.image_io import read_volume, to_ras
    from autopipe.preprocess.skull_strip import brain_mask

    spec = load_dataset(cohort)
    rows = []
    for case in _case_ids(cohort):
        truth = to_ras(read_volume(cohort / "groundtruth" / f"{case}_brain.nii.gz")).data > 0
        for k, name in spec.channel_names.items():
            image = to_ras(read_volume(spec.image_path(case, k), np.float32))
            started = time.perf_counter()
            mask = brain_mask(image.data, "deepbet")
            rows.append((f"synthetic {name} {spacing:g} mm {case}", _dice(mask, truth),
                         time.perf_counter() - started))
    return rows


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def _print_dice(rows: list[tuple[str, float, float]]) -> None:
    print("\nskull stripping (deepbet) against reference brain masks")
    for name, dice, seconds in rows:
        print(f"  {name:<40} Dice {dice:.4f}  {seconds:.1f} s")
    if rows:
        values = [d for _, d, _ in rows]
        print(f"  min {min(values):.4f}, mean {statistics.fmean(values):.4f} over {len(values)}")


if __name__ == "__main__":
    main()
