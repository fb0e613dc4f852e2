"""Where per-case tasks run: this machine's process pool (the default), or a Dask cluster.

The one seam between the stages and the machines: fingerprint, check, preprocess, predict's preprocessing,
evaluation and synthesis call `parallel_map(fn, items, workers, ...)` with a plain function from files to
files. `workers` is a number of local processes, or a Cluster: a connected autopipe.dask_cluster.DaskCluster
(`--scheduler`, `--cluster local:N`), which runs one task per item on its workers. This module does not know
Dask; the cluster module builds on it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Protocol, TypeVar

from autopipe.progress import Progress, track

T = TypeVar("T")
R = TypeVar("R")


class Cluster(Protocol):
    """Machines that run one task per item (autopipe.dask_cluster.DaskCluster)."""

    def map(self, fn: Callable[[T], R], items: list[T], desc: str, enabled: bool = True,
            memory_gb: float | None = None, lost: Callable[[T, str], R] | None = None) -> list[R]: ...


Workers = int | Cluster  # local worker processes, or a cluster

log = logging.getLogger(__name__)


def is_cluster(workers: Workers) -> bool:
    return not isinstance(workers, int)


def parallel_map(fn: Callable[[T], R], items: list[T], workers: Workers, desc: str, enabled: bool = True,
                 memory_gb: float | None = None, lost: Callable[[T, str], R] | None = None) -> list[R]:
    """`[fn(x) for x in items]` over `workers` (in this process when workers <= 1), with a progress bar.

    Results keep the order of `items`. `fn` should catch and return the errors it expects, so one bad case
    never stops the others; an unexpected exception is re-raised after all finish. `memory_gb` is one task's
    peak: local processes are as many as the available memory holds, and a cluster is told it per task.
    `lost(item, why)` stands in for a task whose cluster workers kept dying.
    """
    if is_cluster(workers):
        return workers.map(fn, items, desc, enabled=enabled, memory_gb=memory_gb, lost=lost)
    if memory_gb:
        workers = memory_bounded_workers(workers, len(items), memory_gb)
    if workers <= 1 or len(items) <= 1:
        return list(track((fn(x) for x in items), len(items), desc, enabled))
    # spawn, not fork: a process that has already run torch or ITK thread pools deadlocks its forked children
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context) as pool, \
            Progress(len(items), desc, enabled=enabled) as bar:
        futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
        return collect(futures, as_completed(futures), bar)


def collect(futures: dict[Any, int], completed: Iterable[Any], bar: Progress,
            recover: Callable[[int, BaseException], Any] | None = None) -> list:
    """The results of `futures` (future -> item index) in item order, as `completed` yields them, with the bar.

    `recover(i, error)` may turn item i's error into its result (or raise another); any other error is raised
    once every future is in, so one failure never stops the rest.
    """
    results: list = [None] * len(futures)
    failure: BaseException | None = None
    for future in completed:
        i = futures[future]
        try:
            results[i] = future.result()
        except BaseException as exc:  # keep going; report after the others finish
            try:
                if recover is None:
                    raise
                results[i] = recover(i, exc)
            except BaseException as unrecovered:
                failure = failure or unrecovered
        bar.advance()
    if failure is not None:
        raise failure
    return results


def memory_bounded_workers(requested: Workers, cases: int, gb_per_worker: float) -> Workers:
    """At most `requested` local workers, no more than cases, and no more than available memory allows.

    A Dask cluster is returned as it is: its workers' memory limits and MEMORY_GB resources bound it.
    """
    if is_cluster(requested):
        return requested
    workers = max(1, min(requested, cases))
    available = available_gb()
    if available is not None and workers * gb_per_worker > available:
        fitting = max(1, int(available // gb_per_worker))
        if fitting < workers:
            log.warning("%.1f GB of memory available: %d worker(s) instead of %d", available, fitting, workers)
            workers = fitting
    return workers


def available_gb() -> float | None:
    """Memory this machine can give without swapping (MemAvailable), in GB; None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")) / 1024**3
    except (ValueError, OSError, AttributeError):
        return None
