"""A small progress bar on stderr, and a process-parallel map that drives it.

Written here rather than pulled in as a dependency: it is forty lines, and it must never get in
the way of a log (on a terminal it redraws one line; in a log file it writes a line at most every
LOG_INTERVAL seconds, and one when done).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

LOG_INTERVAL = 15.0  # seconds between progress lines when stderr is not a terminal
T = TypeVar("T")
R = TypeVar("R")


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


def parallel_map(fn: Callable[[T], R], items: list[T], workers: int, desc: str,
                 enabled: bool = True) -> list[R]:
    """`[fn(x) for x in items]` over `workers` processes (in this process when workers <= 1), with a bar.

    Results keep the order of `items`. `fn` should catch and return the errors it expects, so
    one bad case never stops the others; an unexpected exception is re-raised after all finish.
    """
    if workers <= 1 or len(items) <= 1:
        return list(track((fn(x) for x in items), len(items), desc, enabled))
    results: list = [None] * len(items)
    failure: BaseException | None = None
    # spawn, not fork: a process that has already run torch or ITK thread pools deadlocks its forked children
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context) as pool, \
            Progress(len(items), desc, enabled=enabled) as bar:
        futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except BaseException as exc:  # keep going; report after the others finish
                failure = failure or exc
            bar.advance()
    if failure is not None:
        raise failure
    return results
