"""Writing files so that a crash never leaves one that looks finished, and JSON-ready plain values.

Every output autopipe writes goes through `atomic_path`: the content is written to a temporary
file in the same folder and renamed onto the final name only once complete (a rename within a
folder is atomic on POSIX file systems). A temporary file's name says which process writes it
(.tmp_PID@HOST_...), so what a killed process left can be told from what a live one is writing and
removed by the next command (`remove_stale_temporaries`), without a lock.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from autopipe.errors import AutopipeError


@contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` if the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(), suffix=path.suffix if suffix is None else suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


TEMPORARY = ".tmp_"
_WRITER = re.compile(r"\.tmp_(\d+)@([^_]*)_")


def temporary_prefix() -> str:
    """The name prefix of this process's temporary files: .tmp_PID@HOST_."""
    return f"{TEMPORARY}{os.getpid()}@{_host()}_"


def remove_stale_temporaries(folder: Path | str, every_host: bool = False) -> int:
    """Delete the temporary files and scratch folders under `folder` whose writer is gone; returns how many.

    A writer is gone when its process no longer runs on this host. A temporary file of another host is
    kept (its process cannot be asked), unless `every_host`: for a folder whose writers are known to have
    finished (the command holding its lock has collected every cluster task). One without a writer in its
    name (older autopipe) is removed. Safe while other commands write into the same folder: their files
    name live processes.
    """
    folder = Path(folder)
    removed = 0
    for path in sorted(folder.rglob(f"{TEMPORARY}*")) if folder.is_dir() else ():
        match = _WRITER.match(path.name)
        other_host = match is not None and match[2] != _host()
        if match and (other_host and not every_host or not other_host and _running(int(match[1]))) \
                or not os.path.lexists(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


@contextmanager
def scratch_folder(parent: Path | str) -> Iterator[Path]:
    """A folder for the temporary files of this process and of the tools it calls, inside `parent` (one of
    autopipe's output folders, never the user's /tmp): TMPDIR points there while the block runs, and it is
    removed at the end, or, after a kill, by the next command's `remove_stale_temporaries(parent)`."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(parent)
    folder = Path(tempfile.mkdtemp(prefix=temporary_prefix() + "scratch", dir=parent))
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # read TMPDIR again
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        tempfile.tempdir = None
        shutil.rmtree(folder, ignore_errors=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def save_png(fig: object, path: Path | str, dpi: int = 80, **options: object) -> Path:
    """Write a matplotlib figure as PNG atomically and close it (pyplot figures; a bare Figure is just dropped)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, **options)  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(fig)  # type: ignore[arg-type]
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write UTF-8 text atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, value: object, indent: int = 2) -> Path:
    """Write `to_plain(value)` as strict JSON (no NaN or Infinity, which strict readers refuse) atomically."""
    return write_text_atomic(path, json.dumps(to_plain(value), indent=indent, allow_nan=False) + "\n")


def number(value: object) -> float:
    """A number read back from autopipe's JSON as a float: null (an undefined value, written for NaN) is NaN."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def to_plain(value: object) -> object:
    """Dataclasses, numpy arrays and scalars, tuples and dicts as plain JSON-ready values; NaN and infinite
    numbers become None (null), the value strict JSON has for "undefined" (`number` reads it back as NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: Path | str) -> object:
    """A JSON file autopipe wrote; AutopipeError naming the file when it is missing or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AutopipeError(f"cannot read {Path(path).name} ({type(exc).__name__}: {exc})", where=str(path),
                            fix="delete it and run the command that writes it again") from None
