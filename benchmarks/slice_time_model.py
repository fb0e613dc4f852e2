"""Check the k-space models' time model (autopipe.plan.models: FLOPs / throughput + a cost per RIM time step) against
measured training steps of CIRIM and MTLRS.

    python benchmarks/slice_time_model.py --workdir DIR [--steps 30] [--threads 2]

DIR is a workspace with a planned and preprocessed k-space cohort (`autopipe demo` leaves one in ./autopipe_demo).
For each size of a small grid, the training step `autopipe train` runs (load a slice, loss, backward, clipping,
Adam) is timed in this process over --steps slices after 3 warm-up steps. It prints the measured and the planned
seconds per slice with the plan's own throughput, and the non-negative least-squares constants (a factor on the
RIM's FLOPs, one on the U-Nets', a cost per time step) that would reproduce the measurements, beside the ones in
use (1, 1 and TIME_STEP_OVERHEAD_S). OpenMP's threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE), as in every
autopipe command (autopipe.runtime.set_threads); the many small operations of a RIM pay for that.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP, as autopipe's commands do

import numpy as np
import scipy.optimize
import torch

from autopipe.layout import kspace_dir
from autopipe.models.slice_models import build_model, model_kwargs
from autopipe.plan.configs import HardwarePlan
from autopipe.plan.models import TIME_STEP_OVERHEAD_S, _seconds, attention_unet_forward_flops, rim_forward_flops
from autopipe.plan.plans_file import load_plans
from autopipe.plan.splits import load_splits
from autopipe.preprocess.kspace_slices import load_slice, slice_refs
from autopipe.runtime import set_threads
from autopipe.train.slice_task import SliceSettings, slice_loss

GRID = [(2, 4, 16), (2, 4, 32), (3, 8, 32), (5, 8, 32)]  # (cascades, time steps, hidden channels) on the ladder
MODELS = ("cirim", "mtlrs")


def time_steps(name: str, plans, kspace: Path, cases: list[str], steps: int) -> float:
    """Median seconds of one training step of model `name` over `steps` slices (after 3 warm-up steps)."""
    torch.manual_seed(0)
    network = build_model(name, model_kwargs(name, plans))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    settings = SliceSettings(epochs=1, learning_rate=1e-3)
    refs = slice_refs(kspace, cases, name != "cirim")
    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        batch = load_slice(kspace, refs[i % len(refs)], torch.device("cpu"))
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = slice_loss(name, network, batch, settings, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--dataset", default="Dataset001_SynthPVL")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    plans_dir = args.workdir / "plans" / args.dataset
    plans = load_plans(plans_dir / "plans.json")
    kspace = kspace_dir(next((args.workdir / "preprocessed" / args.dataset).glob("*_*mm")))
    cases = load_splits(plans_dir / "splits_final.json")[0]["train"]
    r = plans.reconstruction
    matrix, coils = tuple(r.matrix), r.coils
    hardware = HardwarePlan(device="cpu", memory_gb=8.0, throughput_gflops=plans.hardware.throughput_gflops,
                            cpu_threads=args.threads)
    print(f"matrix {matrix}, {coils} coils, {hardware.throughput_gflops:g} GFLOP/s (the plan's), "
          f"{args.threads} thread(s), {args.steps} steps per model")
    rows = []
    for size in GRID:
        cascades, steps, hidden = size
        sized = dataclasses.replace(plans, reconstruction=dataclasses.replace(
            r, cascades=cascades, time_steps=steps, hidden_channels=hidden))
        for name in MODELS:
            segmentation = name != "cirim"
            measured = time_steps(name, sized, kspace, cases, args.steps)
            planned = _seconds(matrix, coils, size, hardware, segmentation)
            rate = hardware.throughput_gflops * 1e9
            rim = 3.0 * cascades * steps * rim_forward_flops(matrix, coils, hidden) / rate
            unet = 3.0 * cascades * attention_unet_forward_flops(matrix, hidden) / rate if segmentation else 0.0
            rows.append((rim, unet, cascades * steps * (2 if segmentation else 1), measured))
            print(f"  {name:6s} {cascades}x{steps}x{hidden:<3d} measured {measured:.3f} s/slice, planned {planned:.3f} "
                  f"({measured / planned:.2f}x)")
    a = np.array([row[:3] for row in rows])
    y = np.array([row[3] for row in rows])
    (rim_factor, unet_factor, per_step), _ = scipy.optimize.nnls(a / y[:, None], np.ones(len(y)))
    fitted = a @ [rim_factor, unet_factor, per_step]
    in_use = a @ [1.0, 1.0, TIME_STEP_OVERHEAD_S]
    print(f"planned / measured {np.min(in_use / y):.2f}-{np.max(in_use / y):.2f} with the constants in use "
          f"(1.00, 1.00, {TIME_STEP_OVERHEAD_S:.4f} s)")
    print(f"non-negative least squares on relative error: measured = {rim_factor:.2f} x RIM FLOP seconds + "
          f"{unet_factor:.2f} x U-Net FLOP seconds + {per_step:.4f} s per time step "
          f"(fitted / measured {np.min(fitted / y):.2f}-{np.max(fitted / y):.2f})")


if __name__ == "__main__":
    main()
