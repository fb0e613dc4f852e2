"""The device training will run on: which one, how much memory the planner may assume, how fast it trains.

Memory target: nnU-Net plans every GPU for 8 GB whatever it has; autopipe does the same but never
assumes more than the device holds. On a CPU it assumes half the RAM (the rest is for data loading),
also at most 8 GB: there, time and not memory binds (autopipe.plan.time_budget).

Throughput: a micro-benchmark of one U-Net block (3x3x3 conv 32->32, InstanceNorm, LeakyReLU, forward +
backward) with torch on the device, times TRAINING_EFFICIENCY, the share of that rate a whole training
step reaches. On 2 CPU cores the block runs at 110-150 GFLOP/s and whole nnU-Net steps measured 103-163
GFLOP/s (14 s for the 1.66 TFLOP step of an 80x96x80 batch-2 plan), so 0.7 errs on the slow side. A device
that is not present (planning here for a GPU elsewhere) gets a nominal rate. Every value can be given
instead of detected, which is what deterministic tests do.

The benchmark runs once per machine (device, threads, processor, torch version) and workspace: the best of
CALIBRATION_ROUNDS rounds spread over several seconds, stored with its date in plans/.device_calibration.json
and read by every later plan. So the same cohort gets the same plan whatever else the machine is doing at
the moment (`autopipe plan --recalibrate` measures again; --throughput-gflops pins a value).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import time
from pathlib import Path

from autopipe.errors import AutopipeError
from autopipe.files import write_json
from autopipe.plan.configs import DEVICES, HardwarePlan, planned
from autopipe.runtime import default_workers

NNUNET_MEMORY_GB = 8.0
CPU_MEMORY_FRACTION = 0.5
TRAINING_EFFICIENCY = 0.7
BENCHMARK_SECONDS = 1.0
CALIBRATION_ROUNDS = 5
CALIBRATION_PAUSE_SECONDS = 0.5  # between rounds, so a short burst of other work spoils one round, not all
CALIBRATION_FILE = ".device_calibration.json"
BENCHMARK_CHANNELS = 32
BENCHMARK_SHAPE = {"cpu": (32, 40, 32), "cuda": (64, 64, 64), "mps": (48, 48, 48)}
# GFLOP/s of whole training steps: cuda from nnU-Net's ~45 s per 250-iteration 3d_fullres epoch on an A100
NOMINAL_GFLOPS = {"cuda": 30000.0, "mps": 3000.0, "cpu": 50.0}


def detect_device() -> str:
    """'cuda' if torch sees an NVIDIA GPU, else 'mps' on Apple silicon, else 'cpu'."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def device_memory_gb(device: str) -> float | None:
    """Memory of the device in GiB: GPU memory for cuda, RAM otherwise; None when it cannot be read."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30
        return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def benchmark_gflops(device: str, threads: int, seconds: float = BENCHMARK_SECONDS) -> float:
    """GFLOP/s of forward + backward through one 3D U-Net block on `device` (mixed precision on cuda).

    The fastest of the repetitions within `seconds` counts: the machine's capacity, not a moment when
    other processes share its cores.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        c, shape = BENCHMARK_CHANNELS, BENCHMARK_SHAPE[device]
        block = torch.nn.Sequential(torch.nn.Conv3d(c, c, 3, padding=1), torch.nn.InstanceNorm3d(c, affine=True),
                                    torch.nn.LeakyReLU(0.01)).to(device)
        x = torch.randn(1, c, *shape, device=device, requires_grad=True)
        flops = 6.0 * c * c * 27 * shape[0] * shape[1] * shape[2]  # 2 FLOPs per MAC, backward = 2x forward

        def step() -> None:
            with torch.autocast(device_type="cuda") if device == "cuda" else contextlib.nullcontext():
                block(x).float().sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()

        step()  # warm-up: kernel selection, allocation
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            tick = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - tick)
        return flops / best / 1e9
    finally:
        torch.set_num_threads(previous)


def machine_key(device: str, threads: int) -> str:
    """What a calibration holds for: the device and its model, the thread count and the torch version."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        model = torch.cuda.get_device_name(0)
    else:
        model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                      if line.startswith("model name")), platform.processor() or platform.machine())
    return f"{device}, {model}, {threads} thread(s), torch {torch.__version__}"


def calibrated_gflops(device: str, threads: int, store: Path | None, recalibrate: bool = False) -> tuple[float, str]:
    """(block GFLOP/s, how it was obtained): from `store` when this machine was calibrated there, else the best of
    CALIBRATION_ROUNDS benchmark rounds, then stored (without a store: measured every time)."""
    key = machine_key(device, threads)
    stored = _read_calibrations(store)
    if key in stored and not recalibrate:
        entry = stored[key]
        return float(entry["gflops"]), _calibrated(entry["date"], len(entry["rounds"]))
    rounds = []
    for i in range(CALIBRATION_ROUNDS):
        if i:
            time.sleep(CALIBRATION_PAUSE_SECONDS)
        rounds.append(round(benchmark_gflops(device, threads), 1))
    best = max(rounds)
    if store is None:
        return best, f"measured now (best of {len(rounds)} rounds)"
    date = datetime.date.today().isoformat()
    write_json(store, {**stored, key: {"gflops": best, "rounds": rounds, "date": date}})
    return best, _calibrated(date, len(rounds))


def _calibrated(date: str, rounds: int) -> str:
    return (f"best of {rounds} rounds, calibrated on {date} and kept in the plans folder's {CALIBRATION_FILE} "
            "(`autopipe plan --recalibrate` measures again)")


def _read_calibrations(store: Path | None) -> dict:
    if store is None or not store.is_file():
        return {}
    try:
        value = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged calibration is measured again
    return value if isinstance(value, dict) and all(isinstance(v, dict) and "gflops" in v for v in value.values()) \
        else {}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def resolve_hardware(device: str | None = None, memory_gb: float | None = None,
                     throughput_gflops: float | None = None, threads: int | None = None,
                     calibration: Path | None = None, recalibrate: bool = False) -> HardwarePlan:
    """The HardwarePlan for a device: given values win, the rest is detected, or measured once per machine and
    read from `calibration` after that."""
    if device is not None and device not in DEVICES:
        raise AutopipeError(f"unknown device '{device}'", fix=f"use one of {', '.join(DEVICES)}")
    detected = detect_device()
    device = device or detected
    device_reason = "given" if device != detected else "detected with torch"
    threads = threads or default_workers()
    memory, memory_reason = _memory_target(device, memory_gb, present=device == detected)
    if throughput_gflops is not None:
        rate, rate_reason = throughput_gflops, "given"
    elif device == detected:
        measured, how = calibrated_gflops(device, threads, calibration, recalibrate)
        rate = measured * TRAINING_EFFICIENCY
        rate_reason = (f"conv-block benchmark {measured:.0f} GFLOP/s on {threads} thread(s), {how}, x "
                       f"{TRAINING_EFFICIENCY} (share a whole training step reaches)")
    else:
        rate, rate_reason = NOMINAL_GFLOPS[device], f"nominal for {device}: not present here to measure"
    return planned(
        HardwarePlan,
        device=(device, device_reason),
        memory_gb=(round(float(memory), 2), memory_reason),
        throughput_gflops=(round(float(rate), 1), rate_reason),
        cpu_threads=(threads, "CPU cores this process may use" if device == "cpu" else "data loading threads"),
    )  # type: ignore[return-value]


def _memory_target(device: str, given: float | None, present: bool) -> tuple[float, str]:
    if given is not None and given <= 0:
        raise AutopipeError(f"--memory-gb must be positive, got {given}")
    total = given if given is not None else (device_memory_gb(device) if present else None)
    source = "given" if given is not None else "detected"
    if total is None:
        return NNUNET_MEMORY_GB, f"{device} memory unknown here: nnU-Net's {NNUNET_MEMORY_GB:g} GB target"
    if device == "cpu":
        target = min(NNUNET_MEMORY_GB, total * CPU_MEMORY_FRACTION)
        return target, f"half of {total:.1f} GB RAM ({source}), at most nnU-Net's {NNUNET_MEMORY_GB:g} GB"
    target = min(NNUNET_MEMORY_GB, total)
    return target, f"nnU-Net's {NNUNET_MEMORY_GB:g} GB target, at most the {total:.1f} GB {source}"
