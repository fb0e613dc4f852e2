"""Same seed, same results across two commits: the check a refactor promises ("behaviour unchanged").

Both commits' code (as git worktrees) runs the same steps on one synthetic cohort made by the older commit:
plan (pinned throughput), preprocess, and `train 0` for 2 epochs x 3 iterations of every planned model
(3d_fullres, 2d, the joint U-Net, CIRIM and the multitask approaches), with seed 7. It then prints whether
plans.json, every preprocessed array, every final checkpoint's weights and every validation and comparison
table are identical (timings and paths aside).

    python benchmarks/same_seed_regression.py --old 6c2f775 --new 06841e7 --workdir /tmp/regression

About 9 minutes on 2 cores. Both commits run with this checkout's virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATASET = "Dataset001_Regression"
TIMING = ("seconds", "time", "created", "date", "path", "folder")


def run(code: Path, cwd: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-m", "autopipe", *args], cwd=cwd, env=env, text=True,
                          capture_output=True)
    if check and done.returncode:
        raise SystemExit(f"{code.name}: autopipe {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def checkout(commit: str, workdir: Path) -> Path:
    """The code of `commit` as a git worktree under `workdir` (removed again by `main`)."""
    code = workdir / f"code_{commit}"
    if not code.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(code), commit], check=True,
                       capture_output=True)
    return code


def run_version(commit: str, workdir: Path, raw: Path) -> Path:
    code = checkout(commit, workdir)
    out = workdir / f"run_{commit}"
    out.mkdir(exist_ok=True)
    if not (out / "raw_data").exists():
        (out / "raw_data").symlink_to(raw)
    run(code, out, "plan", DATASET, "--throughput-gflops", "100", "--hours", "0.05", "-j", "1", "-q")
    run(code, out, "preprocess", DATASET, "-j", "1", "-q", check=False)  # a failed plausibility check is compared too
    (out / "train.out").write_text(run(code, out, "train", "0", DATASET, "--epochs", "2", "--iterations", "3",
                                       "--seed", "7", "-j", "1", check=False))
    return out


def _datasets(file: h5py.File) -> list[str]:
    names: list[str] = []
    file.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def _tensors(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}")


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def compare(old: Path, new: Path) -> int:
    """Print one line per compared output; return the number that differ."""
    results = []
    plans = f"plans/{DATASET}/plans.json"
    results.append((plans, (old / plans).read_text() == (new / plans).read_text()))
    for path in sorted(old.rglob("*.h5")):
        other = new / path.relative_to(old)
        with h5py.File(path) as a, h5py.File(other) as b:
            names = _datasets(a)
            same = set(names) <= set(b) and all(np.array_equal(a[n][()], b[n][()], equal_nan=True) for n in names)
        results.append((str(path.relative_to(old)), same))
    for path in sorted(old.rglob("checkpoint_final.pt")):
        a = dict(_tensors(torch.load(path, map_location="cpu", weights_only=False)["network"]))
        b = dict(_tensors(torch.load(new / path.relative_to(old), map_location="cpu", weights_only=False)["network"]))
        results.append((str(path.relative_to(old)), a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)))
    for path in sorted(old.rglob("summary.json")) + sorted(old.rglob("comparison/fold_*.json")):
        a, b = (_without_timings(json.loads(p.read_text())) for p in (path, new / path.relative_to(old)))
        results.append((str(path.relative_to(old)), a == b))
    for name, same in results:
        print(f"{'identical' if same else 'DIFFERENT'}  {name}")
    differ = sum(not same for _, same in results)
    print(f"{len(results) - differ} identical, {differ} different")
    return differ


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit before the change")
    parser.add_argument("--new", default="HEAD", help="the commit after it (default HEAD)")
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir.resolve()
    raw = workdir / "raw_data"
    try:
        if not (raw / DATASET).exists():
            run(checkout(args.old, workdir), workdir, "synth", str(raw / DATASET), "--cases", "6", "--spacing", "3",
                "--kspace-slices", "4", "--coils", "4", "--seed", "3", "-j", "1", "-q")
        old, new = (run_version(commit, workdir, raw) for commit in (args.old, args.new))
        return 1 if compare(old, new) else 0
    finally:
        for code in workdir.glob("code_*"):
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(code)], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
