"""The executor seam's local pool: order kept, every item run, the first unexpected error raised at the end."""

import pytest

from autopipe.executor import is_cluster, parallel_map


def square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


def test_parallel_map_keeps_order_in_processes_and_in_process():
    items = list(range(7))
    assert parallel_map(square, items, workers=2, desc="t", enabled=False) == [x * x for x in items]
    assert parallel_map(square, items, workers=1, desc="t", enabled=False) == [x * x for x in items]


def test_parallel_map_finishes_the_others_then_raises():
    with pytest.raises(ValueError, match="negative"):
        parallel_map(square, [1, -1, 2], workers=2, desc="t", enabled=False)


def test_a_number_of_workers_is_the_local_pool():
    assert not is_cluster(1) and not is_cluster(4)
