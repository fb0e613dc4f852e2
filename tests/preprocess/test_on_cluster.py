"""`autopipe preprocess` on Dask: a LocalCluster, a running `dask scheduler` with its workers, and a worker killed
mid-case all give the local pool's outputs, bit for bit.

The local pool and the cluster both run each case on one thread here (2 cores, 2 workers), and N4, the one
step whose result depended on its thread count, always runs on one; so arrays, transforms, QC pictures and
CASE.json (less its timings) must be identical, not close.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from autopipe.cli import main
from autopipe.files import TEMPORARY
from autopipe.paths import Workspace
from autopipe.preprocess.runner import preprocess_dataset
from autopipe.synth.cohort import SynthOptions, synthesize_cohort

pytest.importorskip("distributed")

DATASET = "Dataset007_Cluster"
CASES = ("PVL_001", "PVL_002")  # one per worker: the killed one's case is rescheduled
TIMINGS = ("timings", "seconds", "mean_seconds_per_step", "mean_seconds_per_case")  # JSON keys of measured times


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("cluster")
    options = SynthOptions(num_cases=len(CASES), seed=7, spacing=(3.0, 3.0, 3.0), tasks=("segmentation",))
    synthesize_cohort(base / "raw_data" / DATASET, options, workers=1, progress=False)
    assert main(["plan", "--raw-dir", str(base / "raw_data"), "--plans-dir", str(base / "plans"), "-j", "1", "-q",
                 "--throughput-gflops", "100"]) == 0
    return base


def workspace(base: Path, preprocessed: Path) -> Workspace:
    return Workspace(raw=base / "raw_data", plans=base / "plans", preprocessed=preprocessed, results=base / "results")


def folders(base: Path, preprocessed: Path) -> list[str]:
    return ["--raw-dir", str(base / "raw_data"), "--plans-dir", str(base / "plans"), "--preprocessed-dir",
            str(preprocessed), "--results-dir", str(base / "results")]


@pytest.fixture(scope="module")
def local_run(base) -> Path:
    """The reference: the default local process pool with 2 workers."""
    return preprocess_dataset(base / "raw_data" / DATASET, workspace(base, base / "local"), workers=2,
                              progress=False).folder


def contents(folder: Path) -> dict[str, object]:
    """Every output file of a preprocessed folder as comparable values: arrays, JSON without timings, bytes."""
    out: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix == ".h5":
            with h5py.File(path) as f:
                out[name] = {key: f[key][()] for key in f}
        elif path.suffix == ".json":
            out[name] = _untimed(json.loads(path.read_text()))
        else:
            out[name] = path.read_bytes()
    return out


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def assert_same_outputs(folder: Path, reference: Path) -> None:
    mine, theirs = contents(folder), contents(reference)
    assert sorted(mine) == sorted(theirs)
    for name, value in theirs.items():
        if isinstance(value, dict) and name.endswith(".h5"):
            for key, array in value.items():
                assert np.array_equal(mine[name][key], array), f"{name}:{key} differs"
        else:
            assert mine[name] == value, f"{name} differs"


def assert_each_case_once(folder: Path) -> None:
    assert sorted(p.stem for p in folder.glob("*.h5")) == list(CASES)
    assert sorted(p.stem for p in folder.glob("PVL_*.json")) == list(CASES)
    assert not [p for p in folder.parent.parent.rglob(f"{TEMPORARY}*")], "a half-written file survived"


def test_local_cluster_gives_the_local_pools_outputs(base, local_run, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main(["preprocess", DATASET, "--cluster", "local:2", "-q", *folders(base, pre)]) == 0
    assert f"{len(CASES)} case(s) preprocessed" in capsys.readouterr().out
    folder = pre / DATASET / local_run.name
    assert_each_case_once(folder)
    assert_same_outputs(folder, local_run)


def test_the_fingerprint_on_a_cluster_gives_the_same_plan(base, tmp_path):
    plans = tmp_path / "plans"
    assert main(["plan", "--raw-dir", str(base / "raw_data"), "--plans-dir", str(plans), "--cluster", "local:2", "-q",
                 "--throughput-gflops", "100"]) == 0
    for name in ("fingerprint.json", "plans.json", "splits_final.json"):
        assert (plans / DATASET / name).read_text() == (base / "plans" / DATASET / name).read_text(), name


def test_a_worker_killed_mid_case_changes_nothing(base, local_run, tmp_path):
    from autopipe.dask_cluster import connect

    ws = workspace(base, tmp_path / "pre")
    killed: dict = {}
    with connect(local_workers=2) as cluster:
        client = cluster.client

        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    time.sleep(3)  # a few seconds into its case: reading, coregistering
                    busy = [w for w, keys in client.processing().items() if keys and w in busy]
                    if busy:
                        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                        done = len(list((ws.preprocessed / DATASET).rglob("PVL_*.json")))
                        os.kill(pid, signal.SIGKILL)
                        killed.update(pid=pid, done=done, tasks=client.processing()[busy[0]])
                time.sleep(0.2)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        result = preprocess_dataset(base / "raw_data" / DATASET, ws, workers=cluster, progress=False)
        killer.join()
        after = client.run(os.getpid)
    assert killed, "no worker was busy to kill"
    assert killed["done"] < len(CASES) and killed["tasks"], "the kill came after the work"
    assert killed["pid"] not in after.values()  # the nanny started a new worker in its place
    assert result.failed == {} and result.processed == len(CASES)
    assert_each_case_once(result.folder)
    assert_same_outputs(result.folder, local_run)


@pytest.mark.slow
def test_a_running_scheduler_and_its_workers_give_the_same_outputs(base, local_run, tmp_path):
    dask = str(Path(sys.executable).parent / "dask")
    address_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(address_file)], stderr=subprocess.DEVNULL)
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not address_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(address_file.read_text())["address"]
        workers = subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                    "--resources", "MEMORY_GB=4", "--local-directory", str(tmp_path / "dask")],
                                   stderr=subprocess.DEVNULL)
        pre = tmp_path / "pre"
        assert main(["preprocess", DATASET, "--scheduler", address, "-q", *folders(base, pre)]) == 0
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(30)
    folder = pre / DATASET / local_run.name
    assert_each_case_once(folder)
    assert_same_outputs(folder, local_run)
