"""Per-case work on 1 and 2 workers: the local pool and a Dask LocalCluster, cases per minute, the scheduler's
overhead per task, and what that projects to for N nodes of a cluster.

    python benchmarks/cluster_scaling.py [--cases 8] [--spacing 2] [--workdir DIR] [--node-cores 16 --node-gb 64]

A synthetic cohort with skull is made (or reused from --workdir) and planned; then `autopipe preprocess` runs
on it as a user would run it (a fresh command each time, --force, its own output folder) with -j 1, -j 2,
--cluster local:1 and --cluster local:2, each --repeats times (the fastest run is shown). The wall time
includes starting the workers. The overhead per task
is measured on no-op tasks through the same seam (autopipe.executor.parallel_map): submitted all at once
(throughput) and one after another (round trip). The projection assumes the per-case time measured here on
one core and the bytes each case reads and writes on the shared file system.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AUTOPIPE = [sys.executable, "-m", "autopipe"]
SETUPS = (("local pool, 1 process", ["-j", "1"]), ("local pool, 2 processes", ["-j", "2"]),
          ("Dask LocalCluster, 1 worker", ["--cluster", "local:1"]),
          ("Dask LocalCluster, 2 workers", ["--cluster", "local:2"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, help="keep the cohort here to rerun faster")
    parser.add_argument("--node-cores", type=int, default=16, help="cores of a cluster node, for the projection")
    parser.add_argument("--node-gb", type=float, default=64, help="memory of a cluster node, for the projection")
    parser.add_argument("--noop-tasks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2, help="runs per setup; the fastest is shown (a busy "
                                                                  "2-core machine varies by 10-20%% between runs)")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_cluster_"))
    cohort = _cohort(base, args.cases, args.spacing)
    print(f"{args.cases} cases at {args.spacing:g} mm, {_cores()} cores here\n")
    print(f"{'setup':<30} {'wall s':>8} {'cases/min':>10} {'s/case in worker':>17}")
    rows = {}
    for name, options in SETUPS:
        rows[name] = min(_preprocess(base, cohort, options) for _ in range(args.repeats))
        wall, per_case = rows[name]
        print(f"{name:<30} {wall:8.1f} {60 * args.cases / wall:10.2f} {per_case:17.1f}", flush=True)
    per_task, round_trip = _overhead(args.noop_tasks)
    print(f"\nscheduler overhead per task (LocalCluster, 2 workers, no-op tasks): {1000 * per_task:.1f} ms submitted "
          f"together, {1000 * round_trip:.1f} ms round trip one at a time")
    case_s = rows["Dask LocalCluster, 2 workers"][1]
    print(f"  against a {case_s:.1f} s case: {100 * round_trip / case_s:.2f}% of its time")
    _project(base, cohort, case_s, round_trip, args.node_cores, args.node_gb)


def _cohort(base: Path, cases: int, spacing: float) -> Path:
    cohort = base / "raw_data" / "Dataset001_Scaling"
    if not (cohort / "dataset.json").is_file():
        _run(["synth", str(cohort), "--cases", str(cases), "--spacing", f"{spacing:g}", "--tasks", "segmentation",
              "-q"], base)
    _run(["plan", "-q", "--throughput-gflops", "100"], base)
    return cohort


def _preprocess(base: Path, cohort: Path, options: list[str]) -> tuple[float, float]:
    """Wall seconds of one `autopipe preprocess --force` into a fresh folder, and the mean seconds per case."""
    out = base / "preprocessed"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    _run(["preprocess", cohort.name, "--force", "--no-qc", "-q", *options], base)
    wall = time.perf_counter() - start
    report = json.loads(next(out.glob(f"{cohort.name}/*/report.json")).read_text())
    return wall, report["summary"]["mean_seconds_per_case"]


def _overhead(tasks: int) -> tuple[float, float]:
    from autopipe.dask_cluster import connect
    from autopipe.executor import parallel_map

    with connect(local_workers=2) as cluster:
        parallel_map(abs, list(range(20)), cluster, "warm-up", enabled=False)
        start = time.perf_counter()
        parallel_map(abs, list(range(tasks)), cluster, "no-op", enabled=False)
        together = (time.perf_counter() - start) / tasks
        start = time.perf_counter()
        for i in range(50):
            parallel_map(abs, [i], cluster, "no-op", enabled=False)
        one_by_one = (time.perf_counter() - start) / 50
    return together, one_by_one


def _project(base: Path, cohort: Path, case_s: float, overhead_s: float, node_cores: int, node_gb: float) -> None:
    from autopipe.preprocess.runner import GB_PER_WORKER

    case_ids = sorted(p.name.removesuffix("_0000.nii.gz") for p in (cohort / "imagesTr").glob("*_0000.nii.gz"))
    read = sum(p.stat().st_size for p in cohort.rglob("*")
               if p.is_file() and any(p.name.startswith((f"{c}_", f"{c}.")) for c in case_ids))
    written = sum(p.stat().st_size for p in (base / "preprocessed").rglob("*") if p.is_file())
    mb_per_case = (read + written) / len(case_ids) / 1e6
    workers = max(1, min(node_cores, int(node_gb // GB_PER_WORKER)))
    per_node = 60 * workers / (case_s + overhead_s)
    print(f"\nprojection: nodes of {node_cores} cores and {node_gb:g} GB run {workers} single-threaded workers "
          f"({GB_PER_WORKER} GB per case) at {case_s:.1f} s per case; each case moves {mb_per_case:.1f} MB "
          "through the shared file system")
    print(f"{'nodes':>6} {'cases/min':>10} {'1000 cases':>11} {'shared FS MB/s':>15}")
    for nodes in (1, 2, 4, 8, 16, 32):
        rate = nodes * per_node
        print(f"{nodes:6d} {rate:10.0f} {1000 / rate:9.1f} m {rate * mb_per_case / 60:15.1f}")


def _run(command: list[str], cwd: Path) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*AUTOPIPE, *command], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"autopipe {' '.join(command)} failed:\n{done.stderr[-2000:]}")


def _cores() -> int:
    from autopipe.runtime import default_workers

    return default_workers()


if __name__ == "__main__":
    main()
