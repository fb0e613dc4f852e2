"""Training and inference speed at the planned patch and batch on this machine.

    python benchmarks/train_speed.py [--cases 16] [--hours 1] [--iterations 30] [--workers 0,1] [--workdir DIR]

A 2 mm cohort is synthesized (or reused from --workdir), planned with --hours per configuration and
fold, and preprocessed. For each configuration and each number of batch-preparing worker processes,
one epoch of --iterations steps is trained in a fresh process; printed: seconds per iteration (the
planner's estimate beside it), the share of time spent waiting for batches, the process' peak memory,
and sliding-window inference seconds per case with and without mirroring, on the fold's first
held-out case.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

DATASET = "Dataset001_SynthPVL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--hours", type=float, default=1.0, help="planning budget per configuration and fold")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--workers", default="0,1", help="loader worker counts to compare")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the cohort here to rerun faster")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="autopipe_train_"))).resolve()

    from autopipe.cli import main as autopipe

    folders = ["--raw-dir", str(workdir / "raw_data"), "--plans-dir", str(workdir / "plans"),
               "--preprocessed-dir", str(workdir / "preprocessed"), "--results-dir", str(workdir / "results"), "-q"]
    if not (workdir / "raw_data" / DATASET / "dataset.json").is_file():
        autopipe(["synth", str(workdir / "raw_data" / DATASET), "--cases", str(args.cases), "--spacing", "2", "-q"])
    autopipe(["plan", DATASET, *folders, "--hours", str(args.hours)])
    autopipe(["preprocess", DATASET, *folders, "--no-qc"])
    context = multiprocessing.get_context("spawn")
    print(f"\n{'configuration':<12} {'patch':<10} {'batch':>5} {'workers':>7} {'s/it':>6} {'planned':>7} "
          f"{'data wait':>9} {'peak GB':>7} {'infer s/case (mirror / none)':>28}")
    for name in ("3d_fullres", "2d"):
        for workers in (int(w) for w in args.workers.split(",")):
            with ProcessPoolExecutor(1, mp_context=context) as pool:  # not daemonic: loader workers may start
                row = pool.submit(_measure, workdir, name, workers, args.iterations).result()
            print(f"{name:<12} {row['patch']:<10} {row['batch']:>5} {workers:>7} {row['seconds']:>6.2f} "
                  f"{row['planned']:>7.2f} {row['wait']:>8.0%} {row['peak_gb']:>7.2f} "
                  f"{row['mirror']:>16.1f} / {row['plain']:.1f}")


def _measure(workdir: Path, name: str, workers: int, iterations: int) -> dict:
    import torch

    from autopipe.layout import case_paths
    from autopipe.models.checkpoint import checkpoint_path
    from autopipe.paths import Workspace
    from autopipe.predict.inference import predict_probability
    from autopipe.predict.models import load_ensemble
    from autopipe.preprocess.folds import load_fold
    from autopipe.preprocess.storage import read_case
    from autopipe.runtime import set_threads
    from autopipe.train.fit import fit
    from autopipe.train.jobs import training_jobs

    set_threads(2)
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "bench_results")
    fold = load_fold(ws.raw / DATASET, ws, "0")
    job = training_jobs(fold, ws, [name], epochs=1, iterations=iterations, loader_workers=workers)[0]
    job = replace(job, task=replace(job.task, settings=replace(job.task.settings, validation_iterations=1)))
    shutil.rmtree(job.out_dir, ignore_errors=True)
    started = time.perf_counter()
    history = fit(job, torch.device("cpu"), progress=False)["history"]
    elapsed = time.perf_counter() - started
    models = load_ensemble([checkpoint_path(job.out_dir, "final")], torch.device("cpu"))
    image = read_case(case_paths(fold.preprocessed, fold.val_cases[0])[0], ("image",))["image"]
    timings = {}
    for mirror in (True, False):
        tick = time.perf_counter()
        predict_probability(models, image, torch.device("cpu"), mirror=mirror)
        timings[mirror] = time.perf_counter() - tick
    return {"patch": "x".join(map(str, job.task.config.patch_size)), "batch": job.task.config.batch_size,
            "seconds": history[0]["seconds"] / iterations, "planned": job.task.config.seconds_per_iteration,
            "wait": history[0]["data_wait"], "total": elapsed,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "mirror": timings[True], "plain": timings[False]}


if __name__ == "__main__":
    main()
