"""A small progress bar on stderr (autopipe.executor drives it for parallel work).

Written here rather than pulled in as a dependency: it is forty lines, and it must never get in
the way of a log (on a terminal it redraws one line; in a log file it writes a line at most every
LOG_INTERVAL seconds, and one when done).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

LOG_INTERVAL = 15.0  # seconds between progress lines when stderr is not a terminal
T = TypeVar("T")


class Progress:
    """`with Progress(total, "synth") as bar: ... bar.advance()`; prints elapsed time and an ETA."""

    def __init__(self, total: int, desc: str, stream=None, enabled: bool = True) -> None:
        self.total, self.desc, self.done = max(total, 0), desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self._last_line = self.start

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        frac = self.done / self.total if self.total else 1.0
        eta = elapsed / frac - elapsed if 0 < frac < 1 else 0.0
        bar = "#" * int(frac * 24)
        line = f"{self.desc}: [{bar:<24}] {self.done}/{self.total}  {_clock(elapsed)} elapsed"
        if 0 < frac < 1:
            line += f", ~{_clock(eta)} left"
        if self.tty:
            self.stream.write("\r" + line)
        elif self.done >= self.total or time.monotonic() - self._last_line >= LOG_INTERVAL:
            self._last_line = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def track(items: Iterable[T], total: int, desc: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar."""
    with Progress(total, desc, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()
