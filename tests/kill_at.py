"""Run an autopipe command that SIGKILLs itself at its Nth rename, as a crash at that point would stop it.

    python -m tests.kill_at N before|after COUNT_FILE -- autopipe arguments ...

Every output autopipe writes becomes visible through a rename (autopipe.files.atomic_path, plan sets), so
the renames are the points where what a crash leaves behind can differ: "before" stops with the Nth file
complete under its temporary name, "after" with it in place and the next one not begun. N = 0 never kills;
the number of renames done is written to COUNT_FILE when the command ends, so a test can first count the
points of an uninterrupted run and then stop the command at each of them. Worker processes (-j > 1) are
not followed: tests run with -j 1.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def install(kill_at: int, when: str, count_file: Path) -> None:
    """Wrap os.replace and os.rename (Path.rename and Path.replace use them) with the counter and the kill."""
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    count = 0

    def wrapped(real):
        def rename(*args, **kwargs):
            nonlocal count
            count += 1
            if count == kill_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if count == kill_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return rename

    os.replace, os.rename = wrapped(os.replace), wrapped(os.rename)

    import atexit

    atexit.register(lambda: count_file.write_text(str(count)))


def main(argv: list[str]) -> int:
    kill_at, when, count_file, separator, *command = argv
    if separator != "--":
        raise SystemExit("usage: python -m tests.kill_at N before|after COUNT_FILE -- autopipe arguments ...")
    install(int(kill_at), when, Path(count_file))
    from autopipe.cli import main as autopipe

    return autopipe(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
