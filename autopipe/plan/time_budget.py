"""Fit a planned U-Net to the training-time budget: the CPU time-aware rule.

On a GPU (cuda, mps) nnU-Net's memory rules decide patch, batch and features; the budget only sets
the number of epochs (nnU-Net's full 1000 x 250 schedule when no budget is given).

On a CPU the binding limit is time, not memory: nnU-Net's 80x96x80 batch-2 plan takes ~14 s per
iteration on 2 cores, so its 250,000 iterations would take weeks. The rule:

1. seconds per iteration, per dimension (CPU_STEP_COST): w x conv FLOPs of one forward + backward
   step (autopipe.plan.topology) / the calibrated throughput (autopipe.plan.hardware), plus data
   augmentation, which shares the cores (~2e-7 s per voxel and channel), plus a cost per activation
   value (nnU-Net's memory proxy x batch: norms, nonlinearities and memory traffic, which dominate
   narrow networks) and per step. The constants are fitted by benchmarks/time_model.py to whole
   `autopipe train` epochs (per-epoch validation batches included) on 2 cores: 3D 48^3 base 8 batch
   2 measured 0.45 s/it, 48^3 base 16 0.75, 64^3 base 8 1.17, 64^3 base 16 2.75, 80x80x64 base 16
   4.14; 2D batch 12 48^2 base 32 0.30, 64^2 base 16 0.26, 96^2 base 32 1.12, 128x112 base 16 0.59,
   128^2 base 32 2.16. The fit is within 6% on 2D and within 25% on 3D (3D time is mostly memory
   traffic: FLOPs weigh 0.2, activations 3.2e-8 s each). FLOPs alone overestimated 2D and
   underestimated large 3D patches.
2. Batch size: nnU-Net's minimum 2 in 3D, at most nnU-Net's reference 12 in 2D: on a CPU time
   grows linearly with the batch, and more, smaller steps learn faster per hour.
3. A network fits when `min_iterations` (default 2000: eight nnU-Net epochs; a lesion U-Net with
   Dice + CE does not find small lesions in a few hundred steps) take at most `hours_per_fold`.
4. For base features 32, then 16, then 8 (narrower U-Nets, as in the PVL work): start from
   nnU-Net's patch and shrink it with nnU-Net's own step until it fits or reaches the floor
   (48 voxels along the finest axes, the same extent in mm along coarser ones, at least 8 voxels,
   never more than the median shape). The first fit wins, so patch context is kept before width.
   If nothing fits, the floor patch with 8 features is used and the reasons say so.
5. epochs = budget / (iterations per epoch x seconds per iteration), at most nnU-Net's 1000, at
   least 1; 50 iterations per epoch on a CPU so checkpoints and curves come often.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from autopipe.plan.configs import DEFAULT, BudgetPlan, HardwarePlan, planned
from autopipe.plan.topology import UNetPlan, feature_map_size, features_per_stage, shrink_patch, training_flops

CPU_BATCH_SIZE = {3: 2, 2: 12}
FEATURE_LADDER = (32, 16, 8)
FLOOR_VOXELS = 48
MIN_FLOOR_VOXELS = 8
AUGMENT_SECONDS_PER_VOXEL = 2e-7


@dataclass(frozen=True)
class CpuStepCost:
    """What one CPU training step costs beside augmentation, per dimension: a constant, a cost per activation
    value (memory-bound norms, nonlinearities and copies) and the weight of FLOPs / calibrated throughput."""

    seconds_per_step: float
    seconds_per_activation: float
    flop_weight: float


# Fitted (least squares on relative error, non-negative) to 25-step epochs of `autopipe train` timed by
# benchmarks/time_model.py on 2 cores, 1.5 mm heads, calibrated throughput 108 GFLOP/s, 2026-12-06: the first
# epoch of each U-Net, and for 3D 48^3 base 8 and 16 and 2D 48^2 base 32 the second of two (within 6% of the first).
CPU_STEP_COST = {3: CpuStepCost(0.0, 3.2e-8, 0.20), 2: CpuStepCost(0.114, 5.5e-9, 0.69)}
CPU_ITERATIONS_PER_EPOCH = 50
DEFAULT_CPU_HOURS = 1.0


@dataclass(frozen=True)
class TimedPlan:
    """A U-Net fitted to the budget, its estimated speed and schedule, and a reason per planned field."""

    unet: UNetPlan
    seconds_per_iteration: float
    iterations_per_epoch: int
    epochs: int
    reasons: dict[str, str]

    @property
    def training_hours(self) -> float:
        return self.epochs * self.iterations_per_epoch * self.seconds_per_iteration / 3600


def time_terms(unet: UNetPlan, in_channels: int, num_classes: int, hardware: HardwarePlan) -> dict[str, float]:
    """The parts of one training step's time, in seconds: "compute" (FLOPs / throughput, weighted on a CPU),
    "augment" and "overhead" (the CPU's per-activation and per-step cost; 0 on a GPU); and "activations", the
    feature-map values (nnU-Net's memory proxy x batch)."""
    dim = len(unet.patch_size)
    flops = training_flops(unet.patch_size, unet.topology, unet.features, in_channels, num_classes, unet.batch_size)
    activations = unet.batch_size * feature_map_size(unet.patch_size, unet.topology.strides, unet.features,
                                                     num_classes)
    compute = flops / (hardware.throughput_gflops * 1e9)
    if hardware.device == "cpu":
        cost = CPU_STEP_COST[dim]
        compute *= cost.flop_weight
        overhead = cost.seconds_per_activation * activations + cost.seconds_per_step
    else:
        overhead = 0.0
    return {"compute": compute,
            "augment": AUGMENT_SECONDS_PER_VOXEL * unet.batch_size * in_channels * math.prod(unet.patch_size),
            "activations": float(activations), "overhead": overhead}


def seconds_per_iteration(unet: UNetPlan, in_channels: int, num_classes: int, hardware: HardwarePlan) -> float:
    """Estimated wall time of one training step (its share of the epoch's validation batches included): on a CPU
    compute + augmentation + overhead, which share the cores; on a GPU the slower of compute and augmentation,
    which runs in parallel worker processes."""
    t = time_terms(unet, in_channels, num_classes, hardware)
    if hardware.device == "cpu":
        return t["compute"] + t["augment"] + t["overhead"]
    return max(t["compute"], t["augment"] / hardware.cpu_threads)


def patch_floor(spacing: np.ndarray, median_shape: np.ndarray) -> tuple[int, ...]:
    """Smallest patch the CPU rule may use: 48 voxels at the finest spacing, same mm elsewhere, <= median."""
    extent_mm = FLOOR_VOXELS * float(np.min(spacing))
    return tuple(max(1, min(int(m), max(MIN_FLOOR_VOXELS, round(extent_mm / s))))
                 for s, m in zip(spacing, median_shape, strict=True))


def schedule(seconds: float, budget: BudgetPlan) -> tuple[int, str]:
    """Epochs that fit the budget (nnU-Net's maximum without one)."""
    if budget.hours_per_fold is None:
        return budget.max_epochs, f"nnU-Net's full schedule ({budget.max_epochs} x {budget.iterations_per_epoch})"
    fit = int(budget.hours_per_fold * 3600 / (budget.iterations_per_epoch * seconds))
    epochs = max(1, min(budget.max_epochs, fit))
    return epochs, (f"{budget.hours_per_fold:g} h / ({budget.iterations_per_epoch} it x {seconds:.3g} s)"
                    + (f", capped at nnU-Net's {budget.max_epochs}" if fit > budget.max_epochs else ""))


def fit_to_budget(spacing: np.ndarray, median_shape: np.ndarray, nnunet: UNetPlan, in_channels: int,
                  num_classes: int, hardware: HardwarePlan, budget: BudgetPlan) -> TimedPlan:
    """Apply the rule in the module docstring to nnU-Net's plan for one configuration."""
    if hardware.device != "cpu":
        reasons = {
            "patch_size": f"nnU-Net v2: 256^3-voxel start shaped by 1/spacing, clipped to the median shape, "
                          f"shrunk until the memory proxy fits {hardware.memory_gb:g} GB",
            "batch_size": "nnU-Net v2: memory headroom x reference batch, <= 5% of the dataset's voxels, >= 2",
            "features_per_stage": "nnU-Net v2: 32 doubling per stage, capped",
        }
        return _timed(nnunet, in_channels, num_classes, hardware, budget, reasons)
    dim = len(spacing)
    start = replace(nnunet, batch_size=min(nnunet.batch_size, CPU_BATCH_SIZE[dim]))
    floor = patch_floor(spacing, median_shape)
    allowed = None if budget.hours_per_fold is None else budget.hours_per_fold * 3600 / budget.min_iterations
    tried: list[tuple[UNetPlan, float]] = []
    for base in FEATURE_LADDER:
        candidate = _narrow(start, base, dim)
        seconds = seconds_per_iteration(candidate, in_channels, num_classes, hardware)
        while allowed is not None and seconds > allowed:
            smaller = shrink_patch(spacing, candidate.topology, median_shape, floor)
            if smaller is None:
                break
            candidate = UNetPlan(smaller, features_per_stage(smaller.n_stages, dim, base), start.batch_size)
            seconds = seconds_per_iteration(candidate, in_channels, num_classes, hardware)
        tried.append((candidate, seconds))
        if allowed is None or seconds <= allowed:
            break
    start_seconds = seconds_per_iteration(start, in_channels, num_classes, hardware)
    reasons = _cpu_reasons(tried, start, floor, allowed, budget, start_seconds)
    return _timed(tried[-1][0], in_channels, num_classes, hardware, budget, reasons)


def _narrow(unet: UNetPlan, base: int, dim: int) -> UNetPlan:
    return replace(unet, features=features_per_stage(unet.topology.n_stages, dim, base))


def _timed(unet: UNetPlan, in_channels: int, num_classes: int, hardware: HardwarePlan, budget: BudgetPlan,
           reasons: dict[str, str]) -> TimedPlan:
    seconds = seconds_per_iteration(unet, in_channels, num_classes, hardware)
    epochs, epochs_reason = schedule(seconds, budget)
    flops = training_flops(unet.patch_size, unet.topology, unet.features, in_channels, num_classes, unet.batch_size)
    reasons = {
        **reasons,
        "seconds_per_iteration": f"{flops / 1e9:.0f} GFLOP per step / {hardware.throughput_gflops:g} GFLOP/s"
                                 + (" x the CPU's FLOP weight + augmentation + activations + per-step overhead "
                                    "(fitted by benchmarks/time_model.py)" if hardware.device == "cpu" else
                                    ", or augmentation in worker processes if slower"),
        "epochs": epochs_reason,
        "iterations_per_epoch": budget.reasons.get("iterations_per_epoch", "from the budget"),
        "training_hours": f"estimate per fold: {epochs} epochs x {budget.iterations_per_epoch} it x {seconds:.3g} s "
                          "(training steps with their data loading and each epoch's validation batches, as the time "
                          "model was fitted on whole epochs; not the held-out cases' sliding-window prediction at "
                          "the end; the training log ends with the measured seconds per iteration)",
    }
    return TimedPlan(unet, seconds, budget.iterations_per_epoch, epochs, reasons)


def _cpu_reasons(tried: list[tuple[UNetPlan, float]], start: UNetPlan, floor: tuple[int, ...],
                 allowed: float | None, budget: BudgetPlan, start_seconds: float) -> dict[str, str]:
    chosen, seconds = tried[-1]
    dim = len(floor)
    nnunet_patch = "x".join(map(str, start.patch_size))
    if allowed is None:
        need = "no time budget given"
    else:
        need = f"{budget.min_iterations} it in {budget.hours_per_fold:g} h allow {allowed:.2f} s/it"
    if chosen.patch_size == start.patch_size:
        patch = f"CPU time rule: nnU-Net's {nnunet_patch} kept ({start_seconds:.2f} s/it; {need})"
    else:
        patch = (f"CPU time rule: nnU-Net's {nnunet_patch} takes {start_seconds:.1f} s/it, {need}: shrunk with "
                 f"nnU-Net's step, floor {'x'.join(map(str, floor))}")
    if allowed is not None and seconds > allowed:
        patch += f"; even this is {seconds:.2f} s/it: fewer than {budget.min_iterations} it fit"
    narrower = [f"base {t.features[0]}: {'x'.join(map(str, t.patch_size))} at {s:.2f} s/it" for t, s in tried[:-1]]
    features = f"base {chosen.features[0]}, doubling per stage, capped"
    if narrower:
        features = f"CPU time rule: {features}; wider did not fit at the floor patch ({'; '.join(narrower)})"
    return {
        "patch_size": patch,
        "batch_size": f"CPU time rule: time grows with the batch; nnU-Net's batch capped at {CPU_BATCH_SIZE[dim]}",
        "features_per_stage": features,
    }


def default_budget(device: str, hours: float | None) -> BudgetPlan:
    """The budget for a device: 1 h per configuration and fold and 50-iteration epochs on a CPU, else nnU-Net's."""
    cpu = device == "cpu"
    if hours is not None:
        hours_reason = "given"
    elif cpu:
        hours, hours_reason = DEFAULT_CPU_HOURS, f"default on a CPU: {DEFAULT_CPU_HOURS:g} h per configuration and fold"
    else:
        hours_reason = "none on a GPU: nnU-Net's full schedule"
    return planned(
        BudgetPlan,
        hours_per_fold=(hours, hours_reason),
        min_iterations=(DEFAULT, "fewest steps for a lesion U-Net to learn (8 nnU-Net epochs); the CPU rule "
                                 "shrinks the network until they fit"),
        max_epochs=(DEFAULT, "nnU-Net's schedule length"),
        iterations_per_epoch=(CPU_ITERATIONS_PER_EPOCH, "short epochs on a CPU: checkpoints and curves come often")
        if cpu else (DEFAULT, "nnU-Net's epoch length"),
    )  # type: ignore[return-value]
