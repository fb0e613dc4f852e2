"""The slice trainer on tiny prepared k-space: every model trains, resumes exactly, and the fold logic decides
when to train, resume or refuse."""

import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autopipe.distributed import Ranks
from autopipe.errors import AutopipeError
from autopipe.files import read_json
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint
from autopipe.models.slice_models import MODEL_NAMES, SLICE_MODELS, build_model
from autopipe.preprocess.kspace_prep import prepare_kspace_case
from autopipe.train import fit as fit_module
from autopipe.train.fit import Job, Upstream, fit, train_jobs, training_state
from autopipe.train.jobs import _planned_seconds_per_slice
from autopipe.train.slice_task import SliceSettings, SliceTask
from tests.tiny_cohort import make_tiny_cohort

CASES = ("case_000", "case_001", "case_002")
RECON = {"cascades": 2, "time_steps": 2, "hidden_channels": 4, "cell": "IndRNN"}
SEG = {"channels": 4, "poolings": 2}
KWARGS = {
    "cirim": RECON,
    "segmentation_fully_sampled": SEG,
    "segmentation_on_cirim": SEG,
    "end_to_end": {"reconstruction": RECON, "segmentation": SEG},
    "joint": {**RECON, "segmentation_channels": 4, "poolings": 2, "coupled": False},
    "mtlrs": {**RECON, "segmentation_channels": 4, "poolings": 2, "coupled": True},
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def kspace(tmp_path_factory) -> Path:
    """Three prepared cases: 16x20 matrix, 2 coils, 2 slices each."""
    base = tmp_path_factory.mktemp("slices")
    root = make_tiny_cohort(base / "Dataset001_Tiny", n_cases=3, shape=(16, 20, 8), coils=2, kspace_slices=2)
    for case in CASES:
        prepare_kspace_case(root / "kspace" / f"{case}.h5", base / "kspace" / f"{case}.h5", coil_method="calibration")
    return base / "kspace"


def make_job(kspace: Path, out_dir: Path, name: str = "cirim", epochs: int = 2, seed: int = 1,
             reconstruction_checkpoint: Path | None = None, **kwargs_changes) -> Job:
    task = SliceTask(name, {**KWARGS[name], **kwargs_changes}, kspace,
                     SliceSettings(epochs=epochs, learning_rate=1e-3, seed=seed))
    return Job(name=name, fold="0", out_dir=out_dir, plan_digest="abc", train_cases=CASES[:2], val_cases=CASES[2:],
               task=task, builds_on=reconstruction_checkpoint and Upstream("cirim", reconstruction_checkpoint))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["network"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def cirim_final(kspace, tmp_path_factory) -> Path:
    """A trained cirim, for the segmentation that learns on its images."""
    job = make_job(kspace, tmp_path_factory.mktemp("cirim"), epochs=1)
    fit(job, CPU, progress=False)
    return checkpoint_path(job.out_dir, "final")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_trains_and_writes_its_checkpoints_and_curves(kspace, cirim_final, tmp_path, name):
    upstream = cirim_final if name == "segmentation_on_cirim" else None
    upstream_bytes = upstream.read_bytes() if upstream else None
    job = make_job(kspace, tmp_path / name, name=name, reconstruction_checkpoint=upstream)
    result = fit(job, CPU, progress=False)

    names = sorted(p.name for p in job.out_dir.iterdir())
    assert names == ["checkpoint_best.pt", "checkpoint_final.pt", "progress.json", "progress.png"]
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["model"] == name and final["epoch"] == 2 and final["network_kwargs"] == KWARGS[name]
    assert [r["epoch"] for r in result["history"]] == [0, 1] == [r["epoch"] for r in read_json(
        job.out_dir / "progress.json")]
    assert all(torch.isfinite(torch.tensor([r["train_loss"], r["val_loss"]])).all() for r in result["history"])
    assert result["best_val_loss"] == min(r["val_loss"] for r in result["history"])
    torch.manual_seed(job.task.settings.seed)
    untrained = build_model(name, KWARGS[name]).state_dict()
    assert not same(final["network"], untrained)  # the optimizer moved the weights
    if upstream:
        assert upstream.read_bytes() == upstream_bytes  # the frozen cirim is only read


def interrupt_after_epoch(monkeypatch, epoch: int) -> None:
    """Make the trainer die right after writing the latest checkpoint of `epoch` epochs."""
    real_save = fit_module.save_checkpoint

    def save_then_crash(path, state):
        real_save(path, state)
        if path.name == "checkpoint_latest.pt" and state["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit_module, "save_checkpoint", save_then_crash)


@pytest.mark.parametrize("name", ["cirim", "mtlrs"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(kspace, tmp_path, monkeypatch, name):
    whole = make_job(kspace, tmp_path / "whole", name=name, epochs=3)
    expected = fit(whole, CPU, progress=False)

    crashed = make_job(kspace, tmp_path / "crashed", name=name, epochs=3)
    with monkeypatch.context() as patch:
        interrupt_after_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            fit(crashed, CPU, progress=False)
    assert not checkpoint_path(crashed.out_dir, "final").exists()
    assert load_checkpoint(checkpoint_path(crashed.out_dir, "latest"))["epoch"] == 2
    with pytest.raises(AutopipeError, match="--continue"):
        training_state(crashed, resume=False, force=False)
    assert training_state(crashed, resume=True, force=False) == "resume"

    result = fit(crashed, CPU, resume=True, progress=False)
    assert [r["epoch"] for r in result["history"]] == [0, 1, 2]
    losses = [[(r["train_loss"], r["val_loss"]) for r in run["history"]] for run in (expected, result)]
    assert losses[0] == losses[1]
    assert same(weights(checkpoint_path(whole.out_dir, "final")), weights(checkpoint_path(crashed.out_dir, "final")))
    assert not checkpoint_path(crashed.out_dir, "latest").exists()
    assert training_state(crashed, resume=False, force=False) == "done"


def test_the_seed_decides_the_weights(kspace, tmp_path):
    runs = {}
    for label, seed in (("a", 1), ("b", 1), ("c", 2)):
        job = make_job(kspace, tmp_path / label, epochs=1, seed=seed)
        fit(job, CPU, progress=False)
        runs[label] = weights(checkpoint_path(job.out_dir, "final"))
    assert same(runs["a"], runs["b"])
    assert not same(runs["a"], runs["c"])


def test_an_interrupted_run_resumes_only_when_asked_and_unchanged(kspace, tmp_path, monkeypatch):
    job = make_job(kspace, tmp_path / "run", epochs=3)
    assert training_state(job, resume=True, force=False) == "fresh"  # nothing there yet
    interrupt_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fit(job, CPU, progress=False)
    with pytest.raises(AutopipeError, match="interrupted run"):
        training_state(job, resume=False, force=False)
    assert training_state(job, resume=True, force=False) == "resume"
    wider = make_job(kspace, job.out_dir, epochs=3, hidden_channels=8)
    with pytest.raises(AutopipeError, match="another plan"):
        training_state(wider, resume=True, force=False)
    with pytest.raises(AutopipeError, match="another plan"):
        training_state(replace(job, plan_digest="other"), resume=True, force=False)
    longer = make_job(kspace, job.out_dir, epochs=5)
    with pytest.raises(AutopipeError, match="epochs"):
        training_state(longer, resume=True, force=False)
    assert training_state(wider, resume=True, force=True) == "fresh"


def test_a_segmentation_on_an_older_cirim_is_trained_again(tmp_path):
    cirim = tmp_path / "cirim" / "checkpoint_final.pt"
    job = make_job(tmp_path, tmp_path / "seg", name="segmentation_on_cirim", reconstruction_checkpoint=cirim)
    final = checkpoint_path(job.out_dir, "final")
    for path in (cirim, final):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    os.utime(cirim, (1_000, 1_000))
    os.utime(final, (2_000, 2_000))
    assert training_state(job, resume=False, force=False) == "done"
    os.utime(cirim, (3_000, 3_000))
    assert training_state(job, resume=False, force=False) == "fresh"
    assert training_state(replace(job, builds_on=None), resume=False, force=False) == "done"


def test_train_jobs_trains_in_order_skips_finished_models_and_follows_a_new_cirim(kspace, tmp_path):
    cirim = make_job(kspace, tmp_path / "cirim", epochs=1)
    upstream = checkpoint_path(cirim.out_dir, "final")
    segmentation = make_job(kspace, tmp_path / "seg", name="segmentation_on_cirim", epochs=1,
                            reconstruction_checkpoint=upstream)
    with pytest.raises(AutopipeError, match="cirim fold 0 is not trained"):
        train_jobs([segmentation], CPU, Ranks(), progress=False)

    first = train_jobs([cirim, segmentation], CPU, Ranks(), progress=False)
    assert [(s["model"], s["state"]) for s in first] == [("cirim", "trained"), ("segmentation_on_cirim", "trained")]
    assert (segmentation.out_dir / "training.log").is_file()
    again = train_jobs([cirim, segmentation], CPU, Ranks(), progress=False)
    assert [s["state"] for s in again] == ["done", "done"]

    final = checkpoint_path(segmentation.out_dir, "final")
    stamp = upstream.stat().st_mtime - 10
    os.utime(final, (stamp, stamp))  # the segmentation learned on an earlier cirim
    retrained = train_jobs([cirim, segmentation], CPU, Ranks(), progress=False)
    assert [s["state"] for s in retrained] == ["done", "trained"]
    assert final.stat().st_mtime > upstream.stat().st_mtime
    assert training_state(segmentation, resume=False, force=False) == "done"


def test_the_end_of_training_says_the_measured_and_the_planned_time_per_slice(kspace, tmp_path, caplog):
    job = make_job(kspace, tmp_path / "run", epochs=1)
    job = replace(job, task=replace(job.task, planned_seconds_per_step=0.25))
    with caplog.at_level("INFO", logger="autopipe"):
        fit(job, CPU, progress=False)
    line = next(r.getMessage() for r in caplog.records if "per slice measured" in r.getMessage())
    assert "0.250 s planned" in line and "4 training slices" in line


def test_the_planned_step_compared_at_the_end_is_the_one_the_plan_made_for_that_model():
    """cirim: the reconstruction's estimate; the networks with a CIRIM part: the multitask one; a U-Net alone: none
    (the multitask estimate, of CIRIM and U-Net cascades, was printed for it and overstated it 2.6x in the demo)."""
    plans = SimpleNamespace(reconstruction=SimpleNamespace(seconds_per_iteration=0.1),
                            multitask=SimpleNamespace(seconds_per_iteration=0.2))
    planned = {name: _planned_seconds_per_slice(name, plans) for name in MODEL_NAMES}
    assert planned["cirim"] == 0.1 and planned["mtlrs"] == planned["joint"] == planned["end_to_end"] == 0.2
    assert planned["segmentation_fully_sampled"] is None and planned["segmentation_on_cirim"] is None
    assert all((planned[n] is None) == (not SLICE_MODELS[n].reconstructs) for n in MODEL_NAMES)
