"""plan_dataset end to end on a tiny cohort: three files written, raw data untouched."""

import hashlib
import json
import subprocess
import sys

import pytest

from autopipe.errors import AutopipeError
from autopipe.paths import Workspace
from autopipe.plan.planner import plan_dataset
from autopipe.plan.plans_file import load_plans
from tests.tiny_cohort import make_tiny_cohort


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "raw_data", tmp_path / "plans", tmp_path / "preprocessed", tmp_path / "results")


def _snapshot(root):
    """Every path under root with its bytes' hash (files) and modification time."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_plan_writes_three_files_and_leaves_raw_data_alone(workspace):
    root = make_tiny_cohort(workspace.raw / "Dataset001_Tiny", n_cases=5)
    before = _snapshot(root)
    result = plan_dataset(root, workspace, device="cpu", memory_gb=16, throughput_gflops=100.0, progress=False)
    assert _snapshot(root) == before
    out = workspace.plans / "Dataset001_Tiny"
    assert {result["fingerprint"], result["plans"], result["splits"]} == {
        out / "fingerprint.json", out / "plans.json", out / "splits_final.json"}
    assert sorted(p.name for p in out.iterdir()) == ["fingerprint.json", "plans.json", "splits_final.json"]
    plans = load_plans(out / "plans.json")
    assert plans.hardware.device == "cpu" and plans.budget.hours_per_fold == 1.0
    assert set(plans.configurations) == {"3d_fullres", "2d"}
    assert json.loads((out / "fingerprint.json").read_text())["num_cases"] == 5
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 5 and sorted(c for f in splits for c in f["val"]) == [f"case_{i:03d}" for i in range(5)]
    assert "3d_fullres" in result["summary"] and "s/it" in result["summary"]


def test_plan_for_a_gpu_uses_nnunets_schedule(workspace):
    root = make_tiny_cohort(workspace.raw / "Dataset002_Tiny", n_cases=4, kspace=False, clinical=False)
    plan_dataset(root, workspace, device="cuda", memory_gb=24, throughput_gflops=30000.0, progress=False)
    plans = load_plans(workspace.plans / "Dataset002_Tiny" / "plans.json")
    config = plans.configurations["3d_fullres"]
    assert (config.epochs, config.iterations_per_epoch, config.features_per_stage[0]) == (1000, 250, 32)
    assert plans.hardware.memory_gb == 8.0  # nnU-Net's target, not the whole card
    assert plans.reconstruction is None and plans.hand_function is None


def test_plans_folder_inside_the_cohort_is_refused(workspace):
    root = make_tiny_cohort(workspace.raw / "Dataset003_Tiny", n_cases=2, kspace=False)
    inside = Workspace(workspace.raw, root / "plans", workspace.preprocessed, workspace.results)
    with pytest.raises(AutopipeError, match="never writes into raw data"):
        plan_dataset(root, inside, device="cpu", memory_gb=8, throughput_gflops=100.0, progress=False)


def test_patient_column_keeps_a_patients_scans_in_one_fold(workspace):
    root = make_tiny_cohort(workspace.raw / "Dataset004_Tiny", n_cases=8, kspace=False)
    lines = (root / "clinical.csv").read_text().splitlines()
    rows = [lines[0] + ",patient_id"] + [f"{line},p{i // 2}" for i, line in enumerate(lines[1:])]
    (root / "clinical.csv").write_text("\n".join(rows) + "\n")
    plan_dataset(root, workspace, device="cpu", memory_gb=8, throughput_gflops=100.0, progress=False)
    splits = json.loads((workspace.plans / "Dataset004_Tiny" / "splits_final.json").read_text())
    assert len(splits) == 4  # 4 patients: 4 folds
    for fold in splits:
        patients = {int(c[-3:]) // 2 for c in fold["val"]}
        assert not patients & {int(c[-3:]) // 2 for c in fold["train"]}


def test_replanning_keeps_folds_and_a_copy_of_edited_plans(tmp_path):
    root = make_tiny_cohort(tmp_path / "raw" / "Dataset004_Replan", n_cases=6)
    ws = Workspace.from_environment(tmp_path)
    first = plan_dataset(root, ws, progress=False, throughput_gflops=50.0)
    folds = json.loads(first["splits"].read_text())
    folds[0], folds[1] = folds[1], folds[0]  # a hand-made order must survive re-planning
    first["splits"].write_text(json.dumps(folds))
    edited = first["plans"].read_text().replace('"hours_per_fold": {"value": 1.0', '"hours_per_fold": {"value": 2.0')
    first["plans"].write_text(edited)
    second = plan_dataset(root, ws, progress=False, throughput_gflops=50.0)
    assert json.loads(second["splits"].read_text()) == folds
    assert (second["plans"].parent / "plans.previous.json").read_text() == edited


def test_the_same_cohort_gets_the_same_plan_beside_a_busy_process(tmp_path):
    """The device is measured once (best of several rounds) and the plans read that calibration, so whatever else
    the machine is doing, plans.json stays the same."""
    root = make_tiny_cohort(tmp_path / "raw" / "Dataset005_Load", n_cases=5)
    ws = Workspace.from_environment(tmp_path)
    idle = plan_dataset(root, ws, progress=False)["plans"].read_bytes()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = plan_dataset(root, ws, progress=False)["plans"].read_bytes()
    finally:
        busy.kill()
        busy.wait()
    assert loaded == idle
    assert "calibrated on" in load_plans(ws.plans_dir("Dataset005_Load") / "plans.json").hardware.reasons[
        "throughput_gflops"]
