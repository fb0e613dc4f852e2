"""One writer per output folder: a second command on the same outputs refuses, naming the one at work.

The lock is an advisory `flock` on `.autopipe.lock` inside the folder, which also names the process
holding it; the file is removed when the command ends. The kernel drops a flock when its process ends,
however it ends (kill -9 included), so a lock file left by a killed command is stale by construction:
the next command simply takes it over.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autopipe.errors import AutopipeError

LOCK_FILE = ".autopipe.lock"


@contextmanager
def output_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs, or raise AutopipeError naming the process that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held open for the lock's lifetime)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AutopipeError(f"another autopipe command is writing here: {holder}", where=str(folder),
                                fix="wait until it has finished (or stop it), then run this command again") from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        handle.write(f"`autopipe {command}`, process {os.getpid()} on {socket.gethostname()}, since {started}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
    finally:
        handle.close()  # closing drops the lock
