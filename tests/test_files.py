"""Atomic writes: a temporary file names its writer, so one that a killed process left is removed and one that a
live process is writing is kept. JSON outputs are strict: NaN and infinite numbers are written as null."""

import json
import math
import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from autopipe.files import (
    atomic_path,
    number,
    read_json,
    remove_stale_temporaries,
    scratch_folder,
    temporary_prefix,
    to_plain,
    write_json,
    write_text_atomic,
)
from autopipe.plan.plans_file import format_json


def _write_slowly(folder, ready):
    with atomic_path(folder / "out.json") as tmp:
        tmp.write_text("half")
        ready.set()
        time.sleep(60)


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    writer = context.Process(target=_write_slowly, args=(tmp_path, ready))
    writer.start()
    assert ready.wait(30)
    ours = tmp_path / "sub" / f"{temporary_prefix()}x.json"  # this process is alive too
    ours.parent.mkdir()
    ours.write_text("mine")
    assert remove_stale_temporaries(tmp_path) == 0
    assert len(list(tmp_path.glob(".tmp_*"))) == 1 and ours.exists()
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert remove_stale_temporaries(tmp_path) == 1
    assert not list(tmp_path.glob(".tmp_*")) and ours.exists() and not (tmp_path / "out.json").exists()


def test_a_finished_write_leaves_only_its_file(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "done")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_are_written_as_null_and_read_back_as_nan(tmp_path):
    value = {"mean": float("nan"), "values": np.array([1.0, np.inf, -np.inf]), "scalar": np.float32("nan"), "n": 3}
    path = write_json(tmp_path / "out.json", value)
    assert _strict(path.read_text()) == {"mean": None, "values": [1.0, None, None], "scalar": None, "n": 3}
    assert _strict(format_json(to_plain(value))) == _strict(path.read_text())
    assert math.isnan(number(read_json(path)["mean"])) and number(read_json(path)["n"]) == 3.0


def test_temporary_files_of_a_command_go_to_its_scratch_folder_which_is_removed(tmp_path):
    stale = tmp_path / ".tmp_999999999@otherhost_scratch"  # another host's: kept
    dead = tmp_path / f".tmp_{_dead_pid()}@{temporary_prefix().split('@')[1]}scratchXYZ"
    for folder in (stale, dead):
        folder.mkdir()
        (folder / "tmpfile").write_text("x")
    before = os.environ.get("TMPDIR")
    with scratch_folder(tmp_path) as scratch:
        assert Path(tempfile.gettempdir()) == scratch and scratch.parent == tmp_path
        with tempfile.NamedTemporaryFile(delete=False) as handle:  # what ANTs and the like do
            assert Path(handle.name).parent == scratch
    assert os.environ.get("TMPDIR") == before and tempfile.gettempdir() != str(scratch)
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name]


def _dead_pid() -> int:
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    return child.pid
