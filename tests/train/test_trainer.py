"""The training loop on a tiny preprocessed folder: outputs, exact resume, refusals, and 2-process DDP on CPU."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autopipe.distributed import Ranks, share_work
from autopipe.errors import AutopipeError
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint
from autopipe.plan.configs import SegmentationConfig
from autopipe.preprocess.storage import write_case_arrays
from autopipe.train import fit as trainer_module
from autopipe.train.fit import Job, training_state
from autopipe.train.fit import fit as train
from autopipe.train.schedule import poly_lr
from autopipe.train.segmentation_task import (
    SegmentationTask,
    TrainingSettings,
    default_loader_workers,
    per_rank_batch_size,
)
from tests.ddp import join_gloo, spawn_two_ranks

CASES = ("c0", "c1", "c2", "c3")


def tiny_config(**changes) -> SegmentationConfig:
    values = dict(spacing=(2.0, 2.0, 2.0), median_shape=(20.0, 20.0, 20.0), patch_size=(16, 16, 16), batch_size=2,
                  n_stages=3, features_per_stage=(2, 4, 8), kernel_sizes=((3, 3, 3),) * 3,
                  strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)), epochs=3, iterations_per_epoch=2,
                  seconds_per_iteration=0.1, training_hours=0.01)
    return SegmentationConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES):
        shape = (20 + i, 18, 20)
        seg = np.zeros(shape, np.uint8)
        seg[5 + i:9 + i, 6:10, 7:10] = 1
        image = rng.normal(0, 1, (1, *shape)).astype(np.float32) + 2 * seg
        write_case_arrays(folder / f"{case}.h5", image, np.ones(shape, np.uint8), seg, seed=i)
    return folder


def make_job(preprocessed: Path, out_dir: Path, epochs: int = 3, config: SegmentationConfig | None = None,
             seed: int = 1) -> Job:
    config = config or tiny_config()
    settings = TrainingSettings(epochs=epochs, iterations_per_epoch=2, validation_iterations=1, seed=seed)
    task = SegmentationTask(config=config, preprocessed=preprocessed, transpose_forward=(0, 1, 2), in_channels=1,
                            num_classes=2, settings=settings)
    return Job(name="3d_fullres", fold="0", out_dir=out_dir, plan_digest="abc", train_cases=CASES[:3],
               val_cases=CASES[3:], task=task)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["network"]


def test_training_writes_checkpoints_curves_and_a_history(preprocessed, tmp_path):
    job = make_job(preprocessed, tmp_path / "run")
    result = train(job, torch.device("cpu"), progress=False)
    assert result["epochs"] == 3 and len(result["history"]) == 3
    for name in ("final", "best"):
        assert checkpoint_path(job.out_dir, name).is_file()
    assert not checkpoint_path(job.out_dir, "latest").exists()  # removed once finished
    assert (job.out_dir / "progress.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((job.out_dir / "progress.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert [r["lr"] for r in history] == pytest.approx([poly_lr(1e-2, e, 3) for e in range(3)])
    assert all(0 <= r["data_wait"] <= 1 and r["train_loss"] > 0 for r in history)
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["epoch"] == 3 and final["network_kwargs"]["features_per_stage"] == [2, 4, 8]


def test_same_seed_same_weights_and_another_seed_differs(preprocessed, tmp_path):
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        job = make_job(preprocessed, tmp_path / name, epochs=2, seed=seed)
        train(job, torch.device("cpu"), progress=False)
        runs[name] = weights(checkpoint_path(job.out_dir, "final"))
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(preprocessed, tmp_path, monkeypatch):
    whole = make_job(preprocessed, tmp_path / "whole", epochs=4)
    train(whole, torch.device("cpu"), progress=False)

    crashed = make_job(preprocessed, tmp_path / "crashed", epochs=4)
    real_save = trainer_module.save_checkpoint

    def save_then_crash(path, state):
        real_save(path, state)
        if path.name == "checkpoint_latest.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt  # killed right after epoch 2 was saved

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(crashed, torch.device("cpu"), progress=False)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    assert not checkpoint_path(crashed.out_dir, "final").exists()
    with pytest.raises(AutopipeError, match="--continue"):
        training_state(crashed, resume=False, force=False)
    assert training_state(crashed, resume=True, force=False) == "resume"

    result = train(crashed, torch.device("cpu"), resume=True, progress=False)
    assert [r["epoch"] for r in result["history"]] == [0, 1, 2, 3]
    a, b = weights(checkpoint_path(whole.out_dir, "final")), weights(checkpoint_path(crashed.out_dir, "final"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert training_state(crashed, resume=False, force=False) == "done"


def test_resuming_with_another_plan_or_schedule_is_refused(preprocessed, tmp_path, monkeypatch):
    job = make_job(preprocessed, tmp_path / "run", epochs=3)
    real_save = trainer_module.save_checkpoint

    def crash(path, state):
        real_save(path, state)
        if path.name == "checkpoint_latest.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        train(job, torch.device("cpu"), progress=False)
    wider = make_job(preprocessed, tmp_path / "run", config=tiny_config(features_per_stage=(4, 8, 16)))
    with pytest.raises(AutopipeError, match="another plan"):
        training_state(wider, resume=True, force=False)
    longer = make_job(preprocessed, tmp_path / "run", epochs=5)
    with pytest.raises(AutopipeError, match="epochs"):
        training_state(longer, resume=True, force=False)
    assert training_state(longer, resume=True, force=True) == "fresh"


def test_work_sharing_and_batch_split():
    assert share_work([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert sorted(i for share in share_work([3, 2, 2, 1], 3) for i in share) == [0, 1, 2, 3]
    assert per_rank_batch_size(2, 2) == 1 and per_rank_batch_size(12, 2) == 6 and per_rank_batch_size(2, 4) == 1
    assert default_loader_workers("cpu", 2) == 0 and default_loader_workers("cuda", 16) == 8


def _ddp_worker(rank: int, port: int, preprocessed: Path, out: Path) -> None:
    from autopipe import distributed

    join_gloo(rank, port)
    job = make_job(preprocessed, out / "run", epochs=2)
    train(job, torch.device("cpu"), Ranks(rank, 2, rank), progress=False)
    torch.save({k: v.clone() for k, v in weights(checkpoint_path(job.out_dir, "final")).items()}
               if rank == 0 else {}, out / f"rank{rank}.pt")
    distributed.stop()


def test_two_cpu_processes_train_one_model_with_ddp(preprocessed, tmp_path):
    spawn_two_ranks(_ddp_worker, preprocessed, tmp_path)
    final = load_checkpoint(checkpoint_path(tmp_path / "run", "final"))
    assert final["epoch"] == 2 and len(final["history"]) == 2
    assert not checkpoint_path(tmp_path / "run", "latest").exists()


def test_the_end_of_training_says_the_measured_and_the_planned_time_per_iteration(preprocessed, tmp_path, caplog):
    job = make_job(preprocessed, tmp_path / "run", epochs=1)
    with caplog.at_level("INFO", logger="autopipe"):
        train(job, torch.device("cpu"), progress=False)
    line = next(r.getMessage() for r in caplog.records if "per iteration measured" in r.getMessage())
    assert f"{job.task.config.seconds_per_iteration:.3f} s planned" in line and "data loading" in line
