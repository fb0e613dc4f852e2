"""The progress bar."""

import io

from autopipe.progress import Progress


def test_log_output_is_one_final_line_for_a_quick_job():
    stream = io.StringIO()
    with Progress(3, "work", stream=stream) as bar:
        for _ in range(3):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines == [lines[-1]] and "3/3" in lines[-1]
