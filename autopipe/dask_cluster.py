"""Per-case tasks on a Dask cluster: an existing scheduler (`--scheduler tcp://HOST:PORT`) or a LocalCluster
of N worker processes started for the command (`--cluster local:N`).

Only what autopipe.executor and the CLI need: connect (`open_workers` picks local processes or a cluster),
then map a plain function over items, one task per item. The function reads and writes files on a folder every
worker sees (a shared file system) and returns a small record; arrays never travel. Dask reschedules the tasks
of a worker that dies, so the functions are idempotent (a finished case is skipped). Each task declares its
memory as the MEMORY_GB resource where the workers declare it (`dask worker --resources MEMORY_GB=16`), so a
worker never holds more cases than fit; and it sets its numerical libraries' threads to its share of its
host's cores.

dask.distributed is an extra (`pip install 'autopipe[cluster]'`), imported only here and only when asked for.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autopipe.errors import AutopipeError, first_line
from autopipe.executor import available_gb, collect
from autopipe.progress import Progress
from autopipe.runtime import default_workers, set_threads

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
MEMORY = "MEMORY_GB"  # the Dask resource that declares a worker's memory for autopipe's tasks
CONNECT_TIMEOUT = "30s"
WORKER_WAIT_S = 120  # a batch system may start the workers a little after the scheduler
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap threshold: every
# large array is then mapped and unmapped afresh, and a preprocessing case took 15-20% longer (sys time 24-25 s
# against 15-16 s for 8 cases at 2 mm, benchmarks/cluster_scaling.py). Workers autopipe starts keep glibc's default.
NO_MALLOC_TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
INSTALL = "install the cluster extra: pip install 'autopipe[cluster]' (dask and distributed)"


def parse_local(text: str) -> int:
    """'local:N' -> N, the worker processes of a LocalCluster."""
    kind, _, count = text.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise ValueError(f"'{text}' is not local:N with N >= 1 worker processes (e.g. local:4)")
    return int(count)


def parse_scheduler(text: str) -> str:
    """A scheduler address as Dask writes it: tcp://HOST:PORT (tls:// and inproc:// too)."""
    scheme, sep, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss") or not host or not port.isdigit():
        raise ValueError(f"'{text}' is not a scheduler address like tcp://10.0.0.5:8786 "
                         "(printed by `dask scheduler` when it starts)")
    return text


@dataclass
class DaskCluster:
    """A connected Dask client, and what autopipe knows about its workers."""

    client: Any  # distributed.Client
    description: str
    _local: Any = None  # the LocalCluster autopipe started, closed with the client
    expected_workers: int = 1  # wait for this many before sharing out the cores (a LocalCluster's N)
    _threads: dict[str, int] = field(default_factory=dict)

    def map(self, fn: Callable[[T], R], items: list[T], desc: str, enabled: bool = True,
            memory_gb: float | None = None, lost: Callable[[T, str], R] | None = None) -> list[R]:
        """`[fn(x) for x in items]`, one task per item, in the order of `items`, with a bar of cluster progress.

        A task whose worker died more than `allowed-failures` times (3 by default) is lost: `lost(item, why)`
        becomes its result, so one case that kills its workers (memory) is reported while the others finish. Without
        `lost`, or on an unexpected exception, the first error is raised after every task has finished.
        """
        from distributed import KilledWorker, as_completed

        resources = self._resources(memory_gb)
        self._threads = self._threads_per_task()
        run = uuid.uuid4().hex[:8]
        futures = {self.client.submit(_run_task, fn, item, self._threads, key=f"{desc}-{i}-{run}", pure=False,
                                      resources=resources): i for i, item in enumerate(items)}
        def recover(i: int, exc: BaseException) -> R:
            if not isinstance(exc, KilledWorker):
                raise exc
            why = (f"its worker died {_allowed_failures() + 1} time(s) while running it (out of memory? each "
                   f"worker's memory limit must hold one case; {first_line(exc)})")
            if lost is None:
                raise AutopipeError(f"task {i + 1} of {desc}: {why}", where=self.description,
                                    fix="give the workers more memory, or fewer threads each")
            return lost(items[i], why)

        with Progress(len(items), f"{desc} ({self.description})", enabled=enabled) as bar:
            return collect(futures, as_completed(futures), bar, recover)

    def _resources(self, memory_gb: float | None) -> dict[str, float] | None:
        """The MEMORY_GB request of one task, where workers declare it; warns where they cannot honour it."""
        if not memory_gb:
            return None
        declared = [w.get("resources", {}).get(MEMORY) for w in self._workers().values()]
        declared = [d for d in declared if d is not None]
        if not declared:
            log.info("the Dask workers declare no %s resource: each runs as many cases at once as it has threads, "
                     "so give each thread %.1f GB (dask worker --nthreads 1 --memory-limit %.0fGB)",
                     MEMORY, memory_gb, memory_gb + 1)
            return None
        if memory_gb > max(declared):
            log.warning("a case needs about %.1f GB but no worker declares more than %s=%.1f: one case per worker",
                        memory_gb, MEMORY, max(declared))
            return {MEMORY: max(declared)}
        return {MEMORY: memory_gb}

    def _threads_per_task(self) -> dict[str, int]:
        """Each worker's share of its host's cores per task: cores // (threads of all workers on that host)."""
        workers = self._workers()
        cores = self.client.run(default_workers)
        on_host: dict[str, int] = {}
        for info in workers.values():
            on_host[info["host"]] = on_host.get(info["host"], 0) + info["nthreads"]
        return {address: max(1, cores.get(address, 1) // max(1, on_host[info["host"]]))
                for address, info in workers.items()}

    def _workers(self) -> dict[str, dict]:
        """The scheduler's record of each worker, once the expected ones are there (they may still be starting,
        or restarting after a death)."""
        try:
            self.client.wait_for_workers(self.expected_workers, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise AutopipeError(f"fewer than {self.expected_workers} worker(s) joined the Dask cluster in "
                                f"{WORKER_WAIT_S} s", where=self.description,
                                fix="start workers: dask worker tcp://HOST:PORT --nthreads 1") from None
        return self.client.scheduler_info(n_workers=-1)["workers"]


def _run_task(fn: Callable[[T], R], item: T, threads: dict[str, int]) -> R:
    """Runs on a worker: the numerical libraries' threads set to this worker's share, then the stage's function."""
    from distributed import get_worker

    worker = get_worker()
    # a worker that joined after the map began (a restarted one) takes its share of its own cores
    set_threads(threads.get(worker.address) or max(1, default_workers() // max(1, worker.state.nthreads)))
    return fn(item)


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures"))


@contextmanager
def connect(scheduler: str | None = None, local_workers: int | None = None, memory_gb: float | None = None,
            timeout: str = CONNECT_TIMEOUT) -> Iterator[DaskCluster]:
    """A client of the scheduler at `scheduler`, or of a LocalCluster of `local_workers` processes on loopback.

    The LocalCluster's workers run one task at a time each, with `memory_gb` (default: the available memory
    shared out) as their memory limit and declared MEMORY_GB; they are stopped when the block ends.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise AutopipeError("--scheduler and --cluster need dask.distributed, which is not installed",
                            fix=INSTALL) from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise AutopipeError(f"cannot reach the Dask scheduler at {scheduler}: {first_line(exc)}",
                                where="--scheduler",
                                fix="start one (`dask scheduler`) and workers (`dask worker ADDRESS`), and give the "
                                    "address it prints") from None
        cluster = DaskCluster(client, scheduler)
    else:
        n = local_workers or 1
        per_worker = memory_gb or (available_gb() or 4.0 * n) / n  # memory unknown: 4 GB each
        with dask.config.set(NO_MALLOC_TRIM):
            local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                 dashboard_address=None, memory_limit=f"{per_worker:.2f}GB",
                                 resources={MEMORY: round(per_worker, 2)}, silence_logs=logging.ERROR)
        cluster = DaskCluster(Client(local), f"local cluster of {n} workers", _local=local, expected_workers=n)
    log.info("per-case work goes to the Dask cluster at %s (%d workers)", cluster.description,
             len(cluster._workers()))
    try:
        yield cluster
    finally:
        cluster.client.close()
        if cluster._local is not None:
            cluster._local.close()


@contextmanager
def open_workers(processes: int, scheduler: str | None = None,
                 local_workers: int | None = None) -> Iterator[int | DaskCluster]:
    """`processes` local processes, or a connected Dask cluster for --scheduler / --cluster local:N (closed after)."""
    if scheduler is None and local_workers is None:
        yield processes
        return
    with connect(scheduler=scheduler, local_workers=local_workers) as cluster:
        yield cluster
