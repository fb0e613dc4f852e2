"""Writing files so that a crash never leaves one that looks finished, and JSON-ready plain values.

Every output autopipe writes goes through `atomic_path`: the content is written to a temporary
file in the same folder and renamed onto the final name only once complete (a rename within a
folder is atomic on POSIX file systems).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` if the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    from autopipe.errors import AutopipeError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AutopipeError(f"cannot read {Path(path).name} ({type(exc).__name__}: {exc})", where=str(path),
                            fix="delete it and run the command that writes it again") from None
