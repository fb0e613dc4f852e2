"""One writer per output folder: a second holder is refused with the first one named; a killed holder's lock is
taken over, and no lock file is left behind."""

import multiprocessing
import os
import signal
import time

import pytest

from autopipe.errors import AutopipeError
from autopipe.locks import LOCK_FILE, output_lock


def _hold(folder, ready):
    with output_lock(folder, "preprocess"):
        ready.set()
        time.sleep(60)


def test_a_second_writer_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold, args=(tmp_path, ready))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(AutopipeError, match=rf"`autopipe preprocess`, process {holder.pid}"), \
            output_lock(tmp_path, "plan"):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert (tmp_path / LOCK_FILE).is_file()  # left by the killed process, but no longer locked
    with output_lock(tmp_path, "plan"):
        assert "autopipe plan" in (tmp_path / LOCK_FILE).read_text()
    assert not (tmp_path / LOCK_FILE).exists()
