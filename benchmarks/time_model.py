"""Calibrate the CPU time model (autopipe.plan.time_budget) against measured training epochs, 2D and 3D.

    python benchmarks/time_model.py --workdir DIR [--iterations 25] [--epochs 2] [--threads 2]

DIR holds a planned and preprocessed cohort (benchmarks/compare_2d_3d.py or train_speed.py make one).
For a grid of 2D and 3D U-Nets (patch, base features, batch), --epochs epochs of --iterations training
steps and their validation batches are trained in a fresh process on fold 0, as `autopipe train` runs
them (loader in the main process, the cohort's own augmentation). Printed per U-Net: the measured
seconds per iteration (the last epoch's seconds / its training iterations: the first one carries
one-time costs), the model's terms (FLOPs /
throughput, augmentation, activations) and its estimate; then, per dimension, the least-squares
per-step and per-activation constants that would reproduce the measurements, beside the ones in use.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.optimize

DATASET = "Dataset001_SynthPVL"
GRID = {  # (patch, base features, batch): the sizes the CPU rule chooses between on 1-2 mm heads
    3: [((48, 48, 48), 8, 2), ((48, 48, 48), 16, 2), ((64, 64, 64), 8, 2), ((64, 64, 64), 16, 2),
        ((80, 80, 64), 16, 2)],
    2: [((48, 48), 32, 12), ((64, 64), 16, 12), ((96, 96), 32, 12), ((128, 112), 16, 12), ((128, 128), 32, 12)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per U-Net; the last one is timed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from autopipe.plan import time_budget as tb

    context = multiprocessing.get_context("spawn")
    rows = []
    print(f"{'dim':>3} {'patch':>10} {'base':>4} {'batch':>5} {'measured':>9} {'flops':>7} {'augment':>8} "
          f"{'activ. (M)':>10} {'model':>7}")
    for dim, grid in GRID.items():
        for patch, base, batch in grid:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                row = pool.submit(_measure, args.workdir.resolve(), dim, patch, base, batch, args.iterations,
                                  args.epochs, args.threads).result()
            rows.append(row)
            print(f"{dim:>3} {'x'.join(map(str, patch)):>10} {base:>4} {batch:>5} {row['measured']:>9.3f} "
                  f"{row['compute']:>7.3f} {row['augment']:>8.3f} {row['activations'] / 1e6:>10.1f} "
                  f"{row['model']:>7.3f}")
    for dim in GRID:
        mine = [r for r in rows if r["dim"] == dim]
        in_use = tb.CPU_STEP_COST[dim]
        # measured - augment = step + per_activation * activations + weight * compute, on relative error
        a = np.array([[1.0, r["activations"], r["compute"] / in_use.flop_weight] for r in mine])
        b = np.array([r["measured"] - r["augment"] for r in mine])
        scale = 1 / np.array([r["measured"] for r in mine])
        (step, per_activation, weight), _ = scipy.optimize.nnls(a * scale[:, None], b * scale)
        errors = [(a[i] @ (step, per_activation, weight) + r["augment"]) / r["measured"] - 1
                  for i, r in enumerate(mine)]
        model = [r["model"] / r["measured"] - 1 for r in mine]
        print(f"{dim}D fit: CpuStepCost({step:.3g}, {per_activation:.2g}, {weight:.2f}), errors "
              f"{', '.join(f'{e:+.0%}' for e in errors)}; in use: {in_use}, errors "
              f"{', '.join(f'{e:+.0%}' for e in model)}")


def _measure(workdir: Path, dim: int, patch: tuple[int, ...], base: int, batch: int, iterations: int,
             epochs: int, threads: int) -> dict:
    import torch

    from autopipe.paths import Workspace
    from autopipe.plan.time_budget import time_terms
    from autopipe.plan.topology import UNetPlan, features_per_stage, get_pool_and_conv_props
    from autopipe.preprocess.folds import load_fold
    from autopipe.runtime import set_threads
    from autopipe.train.fit import fit
    from autopipe.train.jobs import training_jobs

    set_threads(threads)
    ws = Workspace(raw=workdir / "raw_data", plans=workdir / "plans", preprocessed=workdir / "preprocessed",
                   results=workdir / "time_model_results")
    fold = load_fold(ws.raw / DATASET, ws, "0")
    name = "3d_fullres" if dim == 3 else "2d"
    job = training_jobs(fold, ws, [name], epochs=epochs, iterations=iterations)[0]
    config = job.task.config
    topology = get_pool_and_conv_props(config.spacing, patch)
    unet = UNetPlan(topology, features_per_stage(topology.n_stages, dim, base), batch)
    config = replace(config, patch_size=topology.patch_size, batch_size=batch, n_stages=topology.n_stages,
                     features_per_stage=unet.features, kernel_sizes=topology.kernel_sizes, strides=topology.strides)
    job = replace(job, task=replace(job.task, config=config),
                  out_dir=job.out_dir.parent / f"{name}_{'x'.join(map(str, patch))}_{base}_{batch}")
    shutil.rmtree(job.out_dir, ignore_errors=True)
    history = fit(job, torch.device("cpu"), progress=False)["history"]
    terms = time_terms(unet, fold.plans.preprocessing.num_channels, job.task.num_classes, fold.plans.hardware)
    shutil.rmtree(job.out_dir, ignore_errors=True)
    return {"dim": dim, "measured": history[-1]["seconds"] / iterations, **terms,
            "model": terms["compute"] + terms["augment"] + terms["overhead"]}


if __name__ == "__main__":
    main()
