"""The progress bar and the parallel map that drives it."""

import io

import pytest

from autopipe.progress import Progress, parallel_map


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


def test_log_output_is_one_final_line_for_a_quick_job():
    stream = io.StringIO()
    with Progress(3, "work", stream=stream) as bar:
        for _ in range(3):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines == [lines[-1]] and "3/3" in lines[-1]
