"""The Dask side of the executor seam, on a real LocalCluster of 2 worker processes on loopback."""

import logging
import os

import pytest

from autopipe.cli import main
from autopipe.dask_cluster import MEMORY, parse_local, parse_scheduler
from autopipe.errors import AutopipeError
from autopipe.executor import is_cluster, parallel_map
from autopipe.runtime import default_workers

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


def die_on_13(x: int) -> int:
    if x == 13:
        os._exit(3)  # what the kernel's OOM killer does to a worker, as far as the scheduler can tell
    return x


def thread_settings(_: int) -> tuple[str, int]:
    import SimpleITK as sitk

    return os.environ["OMP_NUM_THREADS"], sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()


@pytest.fixture(scope="module")
def cluster():
    from autopipe.dask_cluster import connect

    # one death gives a task up (the lost-task test takes seconds, not four worker restarts), and one task per
    # worker at a time, so a task queued behind the one that kills its worker is never blamed with it
    settings = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(settings), connect(local_workers=2) as cluster:
        yield cluster


def test_local_cluster_keeps_order_and_matches_the_local_pool(cluster):
    items = list(range(9))
    assert is_cluster(cluster)
    assert parallel_map(square, items, cluster, "t", enabled=False) == parallel_map(square, items, 1, "t",
                                                                                    enabled=False)


def test_an_unexpected_error_is_raised_after_the_others_finish(cluster):
    with pytest.raises(ValueError, match="negative"):
        parallel_map(square, [1, -1, 2], cluster, "t", enabled=False)


def test_a_task_whose_worker_dies_is_reported_and_the_others_finish(cluster):
    results = parallel_map(die_on_13, [1, 13, 2], cluster, "t", enabled=False, lost=lambda x, why: f"lost {x}: {why}")
    assert results[0] == 1 and results[2] == 2
    assert results[1].startswith("lost 13: its worker died 1 time(s)") and "memory" in results[1]
    with pytest.raises(AutopipeError, match="task 2 of t: its worker died"):
        parallel_map(die_on_13, [1, 13], cluster, "t", enabled=False)


def test_each_task_takes_its_workers_share_of_the_cores(cluster):
    share = max(1, default_workers() // 2)  # two single-threaded workers on this host
    assert set(parallel_map(thread_settings, [0, 1, 2], cluster, "t", enabled=False)) == {(str(share), share)}


def test_memory_is_declared_per_task_and_never_more_than_a_worker_has(cluster):
    declared = cluster._workers()
    most = max(w["resources"][MEMORY] for w in declared.values())
    assert cluster._resources(None) is None
    assert cluster._resources(most / 2) == {MEMORY: most / 2}
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("autopipe.dask_cluster").addHandler(handler)
    try:
        assert cluster._resources(most * 2) == {MEMORY: most}  # never a request no worker can meet: it would hang
    finally:
        logging.getLogger("autopipe.dask_cluster").removeHandler(handler)
    assert any("one case per worker" in w for w in warnings)


def test_options_are_checked_before_anything_starts(capsys):
    assert parse_local("local:3") == 3
    assert parse_scheduler("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    for bad in ("local", "local:0", "slurm:4", "local:x"):
        with pytest.raises(ValueError, match="local:N"):
            parse_local(bad)
    for bad in ("10.0.0.5:8786", "tcp://10.0.0.5", "http://host:80"):
        with pytest.raises(ValueError, match="scheduler address"):
            parse_scheduler(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", "--cluster", "local:x"])
    assert exit_info.value.code == 2 and "local:N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["preprocess", "--cluster", "local:2", "--scheduler", "tcp://127.0.0.1:8786"])
    assert "not allowed with" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_a_message_not_a_traceback():
    from autopipe.dask_cluster import connect

    with pytest.raises(AutopipeError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9") as info, \
            connect(scheduler="tcp://127.0.0.1:9", timeout="1s"):
        pass
    assert "dask scheduler" in info.value.fix


def test_evaluation_on_the_cluster_gives_the_local_numbers(cluster, tmp_path):
    import nibabel as nib
    import numpy as np

    from autopipe.evaluate.evaluation import evaluate_cases

    rng = np.random.default_rng(0)
    pairs = []
    for case in ("a", "b", "c"):
        reference = (rng.random((12, 10, 8)) > 0.8).astype(np.uint8)
        prediction = np.roll(reference, 1, axis=0)
        for kind, array in (("ref", reference), ("pred", prediction)):
            nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 2.0, 1.0])), tmp_path / f"{case}_{kind}.nii.gz")
        pairs.append((case, tmp_path / f"{case}_pred.nii.gz", tmp_path / f"{case}_ref.nii.gz"))
    local = evaluate_cases(pairs, (1,), workers=1)
    assert evaluate_cases(pairs, (1,), workers=cluster) == local and list(local["cases"]) == ["a", "b", "c"]
