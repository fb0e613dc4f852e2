"""The first three commands in a row on a small synthetic cohort, as an analyst would run them."""

import hashlib
import json
from pathlib import Path

import pytest

from autopipe.cli import main


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("ws")
    cohort = base / "raw_data" / "Dataset007_SynthPVL"
    code = main(["synth", str(cohort), "--cases", "3", "--spacing", "3", "--seed", "5", "--kspace-slices", "4",
                 "-j", "1", "-q"])
    assert code == 0
    return base


def test_synth_then_check_passes(workspace, capsys):
    assert main(["check", "--raw-dir", str(workspace / "raw_data"), "-j", "1", "-q"]) == 0
    assert "0 error(s)" in capsys.readouterr().out


def test_plan_writes_plans_and_leaves_raw_data_untouched(workspace):
    raw = workspace / "raw_data"
    before = tree_digest(raw)
    code = main(["plan", "7", "--raw-dir", str(raw), "--plans-dir", str(workspace / "plans"), "-j", "1", "-q",
                 "--throughput-gflops", "50"])
    assert code == 0
    assert tree_digest(raw) == before
    folder = workspace / "plans" / "Dataset007_SynthPVL"
    plans = json.loads((folder / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["patch_size"]["reason"]
    assert plans["reconstruction"] is not None
    splits = json.loads((folder / "splits_final.json").read_text())
    assert sorted(c for fold in splits for c in fold["val"]) == ["PVL_001", "PVL_002", "PVL_003"]


def test_no_partial_folder_is_left_behind(workspace):
    assert [p.name for p in (workspace / "raw_data").iterdir()] == ["Dataset007_SynthPVL"]
