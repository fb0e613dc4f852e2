"""Compare what a command leaves behind after SIGKILL and a rerun with what it leaves uninterrupted.

Outputs are compared by meaning, not bytes, where bytes legitimately differ from run to run: timings
(seconds, data_wait, ...) are dropped from JSON and checkpoints; PNG pictures (curves plot seconds) and
logs (a resumed run appends to its log) are compared by name only; caches are left out. Everything else
(NIfTI, HDF5, transforms, CSV, the rest of every JSON and every tensor of every checkpoint) must be equal.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"seconds", "timings", "seconds_per_slice", "mean_seconds_per_case", "mean_seconds_per_step",
            "data_wait", "started"}
BY_NAME_ONLY = (".png", ".log")
CACHES = (".check_cache", ".cache", ".locks")
LEFTOVERS = (".tmp_", ".staging", ".replaced")


def run_killed(argv: list[str], kill_at: int, when: str, env: dict[str, str], count_file: Path,
               timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `autopipe argv` in a subprocess that SIGKILLs itself at its kill_at-th rename (0: never)."""
    command = [sys.executable, "-m", "tests.kill_at", str(kill_at), when, str(count_file), "--", *argv]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def isolated_env(base: Path) -> dict[str, str]:
    """This environment with HOME and TMPDIR inside `base` (nothing may be written outside the outputs)."""
    for name in ("home", "tmp"):
        (base / name).mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(base / "home"), "TMPDIR": str(base / "tmp"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def restore(snapshot: Path, workspace: Path) -> None:
    """Make `workspace` an exact copy of `snapshot` (file times included, which the check cache reads)."""
    shutil.rmtree(workspace, ignore_errors=True)
    shutil.copytree(snapshot, workspace, symlinks=True)


def leftovers(root: Path) -> list[str]:
    """Temporary files, staging folders and folders set aside that a finished command should not leave."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(LEFTOVERS)
                  or p.name.endswith(LEFTOVERS))


def written_outside(root: Path) -> list[str]:
    """Files in the HOME and TMPDIR that `isolated_env(root)` set up: none may be written there."""
    return sorted(str(p.relative_to(root)) for name in ("home", "tmp") for p in (root / name).rglob("*"))


def outputs(root: Path, folders: tuple[str, ...]) -> dict[str, object]:
    """Relative path -> comparable content, for every file under the named `folders` of `root`."""
    found = {}
    for name in folders:
        for path in sorted((root / name).rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(part in CACHES for part in relative.parts) and path.name != ".autopipe.lock":
                found[str(relative)] = content(path)
    return found


def content(path: Path) -> object:
    """What must be equal between two runs of the same command on the same inputs."""
    name = path.name
    if name.endswith(BY_NAME_ONLY):
        return "present"
    if name.endswith(".json"):
        return _plain(json.loads(path.read_text(encoding="utf-8")))
    if name.endswith(".pt"):
        import torch

        return _plain(torch.load(path, map_location="cpu", weights_only=True))
    if name.endswith((".h5", ".npz")):
        return _arrays(path)
    return path.read_bytes()


def _arrays(path: Path) -> dict[str, object]:
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: _plain(data[k]) for k in sorted(data.files)}
    import h5py

    found: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: found.update({k: _plain(v[()])}) if isinstance(v, h5py.Dataset) else None)
        found["attrs"] = _plain(dict(f.attrs))
    return found


def _plain(value: object) -> object:
    """Nested values with timings dropped, NaN made comparable and arrays as (dtype, shape, bytes)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "detach"):  # a tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def differences(expected: dict[str, object], found: dict[str, object]) -> list[str]:
    """What differs between two `outputs` results, one line each."""
    lines = [f"missing: {k}" for k in sorted(set(expected) - set(found))]
    lines += [f"not written by an uninterrupted run: {k}" for k in sorted(set(found) - set(expected))]
    lines += [f"differs: {k}" for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
    return lines
