"""The one gate: plan, preprocess, train, predict and evaluate refuse a cohort with check errors, naming the case
and the file as `autopipe check` does; unchanged cases are not read again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autopipe.cli import main
from autopipe.cohort import check
from autopipe.cohort.gate import cache_path, require_valid_cohort
from autopipe.errors import AutopipeError
from tests.cohort.test_check import LABEL, NAME, rewrite_image
from tests.tiny_cohort import folders, tree_digest

COMMANDS = (["plan"], ["preprocess"], ["train", "0"], ["predict", "-i", "{new}", "-o", "{out}"], ["evaluate"])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_what_check_refuses(command, cohort: Path, tmp_path: Path, capsys) -> None:
    base = cohort.parent
    (base / "raw_data").mkdir()
    raw = Path(os.replace(cohort, base / "raw_data" / NAME) or base / "raw_data" / NAME)
    rewrite_image(raw / LABEL, lambda a: np.where(a > 0, 2, 0).astype(a.dtype))
    before = tree_digest(raw)
    argv = [part.format(new=tmp_path / "new", out=tmp_path / "out") for part in command]
    assert main([*argv, *folders(base), "-q", "-j", "1"]) == 2
    err = capsys.readouterr().err
    assert f"case_001  {LABEL}: has label values 2 that dataset.json 'labels' does not declare" in err
    assert "autopipe check" in err and "Traceback" not in err and "unexpectedly" not in err
    assert tree_digest(raw) == before


def test_unchanged_cases_are_not_read_again(cohort: Path, tmp_path: Path, monkeypatch) -> None:
    cache = cache_path(tmp_path / "plans", NAME)
    require_valid_cohort(cohort, cache, progress=False)
    assert cache.is_file()
    read = []
    original = check.check_case
    monkeypatch.setattr(check, "check_case", lambda job: read.append(job[1]) or original(job))
    require_valid_cohort(cohort, cache, progress=False)
    assert read == []
    rewrite_image(cohort / LABEL, lambda a: np.where(a > 0, 2, 0).astype(a.dtype))
    with pytest.raises(AutopipeError, match="case_001"):
        require_valid_cohort(cohort, cache, progress=False)
    assert read == ["case_001"]
