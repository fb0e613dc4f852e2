"""The joint model: the U-Net unchanged, the hand-function head and loss, inference over windows, training a fold."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from autopipe.cohort.dataset import ClinicalSpec, DatasetSpec
from autopipe.errors import AutopipeError
from autopipe.layout import joint_name
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from autopipe.models.joint_unet import JointUNet, build_joint_network
from autopipe.models.unet import PlainConvUNet
from autopipe.paths import Workspace
from autopipe.predict.hand_inference import predict_hand_probability, predict_joint_validation
from autopipe.predict.models import TrainedModel, load_model
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.storage import write_case_arrays
from autopipe.train import fit as trainer_module
from autopipe.train.fit import fit as train
from autopipe.train.jobs import joint_job, training_jobs
from autopipe.train.joint_loss import hand_loss, joint_loss, pos_weight_for
from tests.ddp import join_gloo, spawn_two_ranks
from tests.train.test_trainer import tiny_config

PLAN_3D = dict(features_per_stage=(2, 4, 8), kernel_sizes=((3, 3, 3),) * 3, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)))
PLAN_2D = dict(features_per_stage=(2, 4, 8), kernel_sizes=((3, 3),) * 3, strides=((1, 1), (2, 2), (2, 2)))
SMALL_3D = dict(features_per_stage=(2, 4), kernel_sizes=((3, 3, 3),) * 2, strides=((1, 1, 1), (2, 2, 2)))
CASES = ("c0", "c1", "c2", "c3")
LABELS = {"c0": 0, "c1": 1, "c2": 0, "c3": 1}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("plan", "shape"), [(PLAN_3D, (2, 1, 8, 8, 8)), (PLAN_2D, (3, 1, 8, 12))])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_the_joint_forward_is_the_plain_u_net_given_its_weights(plan, shape, deep_supervision):
    torch.manual_seed(0)
    plain = PlainConvUNet(1, 2, **plan, deep_supervision=deep_supervision)
    joint = JointUNet(1, 2, **plan, deep_supervision=deep_supervision)
    result = joint.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == ["hand_head.linear.bias",
                                                                          "hand_head.linear.weight"]
    x = torch.randn(shape)
    expected, got = plain(x), joint(x)
    for a, b in zip(expected if deep_supervision else [expected], got if deep_supervision else [got], strict=True):
        assert torch.equal(a, b)


def test_one_seed_builds_the_same_u_net_with_or_without_the_head():
    torch.manual_seed(3)
    plain = PlainConvUNet(1, 2, **PLAN_3D)
    torch.manual_seed(3)
    joint = JointUNet(1, 2, **PLAN_3D)
    assert all(torch.equal(v, joint.state_dict()[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize(("plan", "shape"), [(PLAN_3D, (2, 1, 8, 8, 8)), (PLAN_2D, (3, 2, 8, 12))])
def test_forward_joint_gives_the_outputs_and_one_logit_per_sample(plan, shape):
    torch.manual_seed(0)
    net = JointUNet(shape[1], 2, **plan)
    x = torch.randn(shape)
    outputs, logits = net.forward_joint(x)
    assert [o.shape for o in outputs] == [o.shape for o in net(x)]
    assert logits.shape == (shape[0],)
    assert torch.equal(net.hand_logits(x), logits)
    assert torch.equal(net(x, joint=True)[1], logits)
    with pytest.raises(ValueError, match="expected"):
        net.forward_joint(torch.randn(1, shape[1] + 1, *shape[2:]))


def test_the_hand_loss_reaches_the_head_and_the_encoder_not_the_decoder():
    torch.manual_seed(0)
    net = JointUNet(1, 2, **PLAN_3D)
    _, logits = net.forward_joint(torch.randn(2, 1, 8, 8, 8))
    hand_loss(logits, torch.tensor([0.0, 1.0]), 1.0).backward()
    assert net.hand_head.linear.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder[0].parameters())
    assert all(p.grad is None for p in net.heads.parameters())


def test_joint_loss_by_hand():
    logits, labels = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1, 0, 0])
    sigmoid = [1 / (1 + math.exp(-v)) for v in (0.5, -1.0, 2.0)]
    expected = (-2.0 * math.log(sigmoid[0]) - math.log(1 - sigmoid[1]) - math.log(1 - sigmoid[2])) / 3
    assert float(hand_loss(logits, labels, 2.0)) == pytest.approx(expected, rel=1e-6)
    total, cls = joint_loss(torch.tensor(0.7), logits, labels, 0.25, 2.0)
    assert float(cls) == pytest.approx(expected, rel=1e-6)
    assert float(total) == pytest.approx(0.7 + 0.25 * expected, rel=1e-6)
    with pytest.raises(ValueError, match="r must be > 0"):
        joint_loss(torch.tensor(0.7), logits, labels, 0.0, 2.0)
    with pytest.raises(ValueError, match=r"\[B\]"):
        hand_loss(logits[None], labels[None], 1.0)


def test_pos_weight_is_negatives_over_positives():
    assert pos_weight_for([0, 0, 0, 1]) == 3.0 and pos_weight_for([1, 1, 0]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        pos_weight_for([1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        pos_weight_for([0, 1, 2])


def _blob_batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n noise patches [n, 1, 8, 8, 8]; odd ones hold a bright blob (label 1), which is also the segmentation."""
    data = rng.normal(0, 1, (n, 1, 8, 8, 8)).astype(np.float32)
    seg = np.zeros((n, 1, 8, 8, 8), np.uint8)
    for i in range(1, n, 2):
        x, y, z = rng.integers(1, 5, 3)
        seg[i, 0, x:x + 3, y:y + 3, z:z + 3] = 1
    data += 4 * seg
    return torch.from_numpy(data), torch.from_numpy(seg), torch.tensor([i % 2 for i in range(n)])


def test_a_few_joint_steps_learn_which_patches_hold_a_blob():
    from autopipe.train.loss import deep_supervision_loss

    torch.manual_seed(0)
    data, seg, labels = _blob_batch(8, np.random.default_rng(0))
    net = JointUNet(1, 2, **SMALL_3D)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    hand_losses = []
    for _ in range(15):
        optimizer.zero_grad()
        outputs, logits = net.forward_joint(data)
        loss, cls = joint_loss(deep_supervision_loss(outputs, seg, [(1, 1, 1)], [1.0]), logits, labels, 0.5, 1.0)
        loss.backward()
        optimizer.step()
        hand_losses.append(float(cls.detach()))
    assert hand_losses[-1] < 0.5 * hand_losses[0]


def _model(plan: dict, patch: tuple[int, ...], seed: int, name: str = "m") -> TrainedModel:
    torch.manual_seed(seed)
    net = JointUNet(1, 2, **plan, deep_supervision=False).eval()
    return TrainedModel(net, patch, (0, 1, 2), 1, 2, "joint_3d_fullres", "0", Path(name))


def test_hand_probability_of_an_ensemble_is_a_probability_whatever_the_order():
    image = np.zeros((1, 12, 10, 9), np.float32)
    image[0, 2:10, 2:8, 2:7] = np.random.default_rng(0).normal(1, 1, (8, 6, 5))
    models = [_model(PLAN_3D, (8, 8, 8), 1), _model(PLAN_3D, (8, 8, 8), 2), _model(PLAN_2D, (8, 8), 3)]
    with torch.no_grad():
        p = predict_hand_probability(models, image, torch.device("cpu"))
    assert 0 <= p <= 1
    assert predict_hand_probability(models[::-1], image, torch.device("cpu")) == p
    assert 0 <= predict_hand_probability(models[2:], np.zeros_like(image), torch.device("cpu")) <= 1


def test_windows_without_brain_do_not_count():
    model = _model(PLAN_3D, (8, 8, 8), 1)
    image = np.zeros((1, 16, 8, 8), np.float32)  # windows start at x = 0, 4, 8; only the first sees x < 4
    image[0, :4] = np.random.default_rng(1).normal(0, 1, (4, 8, 8))
    with torch.no_grad():
        expected = torch.sigmoid(model.network.hand_logits(torch.from_numpy(image[None, :, :8]))).item()
    assert predict_hand_probability([model], image, torch.device("cpu")) == pytest.approx(expected, rel=1e-6)


def test_a_plain_model_has_no_hand_probability():
    net = PlainConvUNet(1, 2, **PLAN_3D, deep_supervision=False)
    model = TrainedModel(net, (8, 8, 8), (0, 1, 2), 1, 2, "3d_fullres", "0", Path("plain"))
    with pytest.raises(ValueError, match="without a hand-function head"):
        predict_hand_probability([model], np.ones((1, 8, 8, 8), np.float32), torch.device("cpu"))


def test_a_joint_checkpoint_loads_as_a_joint_model(tmp_path):
    torch.manual_seed(0)
    net = JointUNet(1, 2, **PLAN_3D)
    kwargs = {"in_channels": 1, "num_classes": 2, **{k: [list(v) for v in vs] if k != "features_per_stage"
                                                      else list(vs) for k, vs in PLAN_3D.items()},
              "n_conv_per_stage": 2, "deep_supervision": True, "hand_head": True}
    path = save_checkpoint(tmp_path / "checkpoint_final.pt", {
        "kind": "joint", "epoch": 1, "network_kwargs": kwargs, "network": net.state_dict(), "patch_size": [8, 8, 8],
        "transpose_forward": [0, 1, 2], "configuration": "joint_3d_fullres", "fold": "0", "hand_weight": 0.5})
    model = load_model(path, torch.device("cpu"))
    assert isinstance(model.network, JointUNet) and not model.network.deep_supervision
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in net.state_dict().items())
    x = torch.randn(1, 1, 8, 8, 8)
    net.eval()
    assert torch.equal(model.network.hand_logits(x), net.hand_logits(x))
    assert torch.equal(model.network(x), net(x)[0])


def test_build_joint_network_follows_the_plan():
    net = build_joint_network(tiny_config(), 2, 2)
    assert isinstance(net, JointUNet) and net.hand_head.linear.in_features == 2 * 8 and net.in_channels == 2


# --- a fold of the joint model, on a tiny preprocessed folder -------------------------------------------------


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    """Four cases; the impaired ones (c1, c3) hold a larger lesion."""
    folder = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES):
        shape = (20, 18, 20)
        seg = np.zeros(shape, np.uint8)
        size = 6 if LABELS[case] else 3
        seg[5:5 + size, 6:6 + size, 7:7 + size] = 1
        image = rng.normal(0, 1, (1, *shape)).astype(np.float32) + 2 * seg
        write_case_arrays(folder / f"{case}.h5", image, np.ones(shape, np.uint8), seg, seed=i)
    return folder


def _fold(preprocessed: Path, tmp_path: Path) -> tuple[Fold, Workspace]:
    spec = DatasetSpec(root=tmp_path / "raw" / "Dataset001_Tiny", channel_names={0: "FLAIR"},
                       labels={"background": 0, "lesion": 1}, num_training=4, file_ending=".nii.gz",
                       clinical=ClinicalSpec())
    plans = SimpleNamespace(configurations={"3d_fullres": tiny_config()}, transpose_forward=(0, 1, 2),
                            preprocessing=SimpleNamespace(num_channels=1))
    workspace = Workspace(*(tmp_path / name for name in ("raw", "plans", "preprocessed", "results")))
    return Fold(spec, plans, preprocessed, "abc", "0", CASES[:3], CASES[3:]), workspace


def test_joint_names():
    assert joint_name("3d_fullres", 0.1, 0.1) == "joint_3d_fullres"
    assert joint_name("3d_fullres", 0.5, 0.1) == "joint_3d_fullres_r0.5"
    assert joint_name("2d", 1.0, 0.1) == "joint_2d_r1"


def test_a_joint_job_is_the_segmentation_job_with_labels_and_r(preprocessed, tmp_path):
    fold, workspace = _fold(preprocessed, tmp_path)
    plain = training_jobs(fold, workspace, ["3d_fullres"], epochs=2)[0]
    job = joint_job(fold, workspace, {**LABELS, "c3": None}, 0.5, 0.1, "3d_fullres", epochs=2)
    assert job.name == "joint_3d_fullres_r0.5" and job.task.hand_weight == 0.5 and job.task.joint \
        and not plain.task.joint
    assert job.out_dir == workspace.results / "Dataset001_Tiny" / "joint_3d_fullres_r0.5" / "fold_0"
    assert job.task.hand_labels == (("c0", 0), ("c1", 1), ("c2", 0))  # c3 (validation) has no label
    assert job.task.settings == plain.task.settings and job.task.config == plain.task.config
    assert job.task.network_kwargs() == {**plain.task.network_kwargs(), "hand_head": True}
    assert "hand_head" not in plain.task.network_kwargs()


def test_a_joint_job_needs_both_classes_and_trains_unlabelled_cases_on_segmentation_only(preprocessed, tmp_path,
                                                                                          caplog):
    fold, workspace = _fold(preprocessed, tmp_path)
    with caplog.at_level("WARNING", logger="autopipe"):
        job = joint_job(fold, workspace, {"c0": 0, "c2": 1}, 0.1, 0.1, "3d_fullres")
    assert "c1" in caplog.text and dict(job.task.hand_labels) == {"c0": 0, "c2": 1}
    with pytest.raises(AutopipeError, match="both") as error:
        joint_job(fold, workspace, {"c0": 1, "c1": 1, "c2": 1}, 0.1, 0.1, "3d_fullres")
    assert "clinical.csv" in error.value.where
    with pytest.raises(AutopipeError, match="r > 0"):
        joint_job(fold, workspace, LABELS, 0.0, 0.1, "3d_fullres")


def test_a_joint_fold_trains_and_predicts_its_held_out_cases(preprocessed, tmp_path):
    fold, workspace = _fold(preprocessed, tmp_path)
    job = joint_job(fold, workspace, LABELS, 0.1, 0.1, "3d_fullres", epochs=2, iterations=2)
    result = train(job, torch.device("cpu"), progress=False)
    history = json.loads((job.out_dir / "progress.json").read_text())
    assert len(result["history"]) == 2 and (job.out_dir / "progress.png").is_file()
    assert all(r["train_hand_loss"] > 0 and r["val_hand_loss"] > 0 and r["train_loss"] > 0 for r in history)
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["kind"] == "joint" and final["hand_weight"] == 0.1 and final["network_kwargs"]["hand_head"]

    report = predict_joint_validation(job.out_dir, job.task.hand_weight, fold, LABELS, torch.device("cpu"),
                                      progress=False)
    assert report == json.loads((job.out_dir / "hand_function.json").read_text())
    assert report["model"] == "joint_3d_fullres" and report["r"] == 0.1 and report["fold"] == "0"
    assert list(report["cases"]) == ["c3"] and report["cases"]["c3"]["label"] == 1
    assert 0 <= report["cases"]["c3"]["probability"] <= 1


def test_held_out_labels_do_not_reach_the_joint_network(preprocessed, tmp_path):
    """They only give the validation curve: flipping them leaves every trained weight as it was."""
    fold, workspace = _fold(preprocessed, tmp_path)
    weights = []
    for held_out_label in (1, 0):
        job = joint_job(fold, workspace, {**LABELS, "c3": held_out_label}, 0.1, 0.1, "3d_fullres", epochs=1,
                        iterations=2)
        train(job, torch.device("cpu"), progress=False)
        weights.append(load_checkpoint(checkpoint_path(job.out_dir, "final"))["network"])
        shutil.rmtree(job.out_dir)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_resumed_joint_run_ends_with_the_weights_of_an_uninterrupted_one(preprocessed, tmp_path, monkeypatch):
    fold, workspace = _fold(preprocessed, tmp_path)
    whole = joint_job(fold, workspace, LABELS, 0.5, 0.1, "3d_fullres", epochs=3, iterations=2)
    train(whole, torch.device("cpu"), progress=False)
    crashed = joint_job(fold, Workspace(*(tmp_path / "again" / n for n in ("r", "p", "pp", "res"))), LABELS, 0.5,
                        0.1, "3d_fullres", epochs=3, iterations=2)
    real_save = trainer_module.save_checkpoint

    def save_then_crash(path, state):
        real_save(path, state)
        if path.name == "checkpoint_latest.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(crashed, torch.device("cpu"), progress=False)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    result = train(crashed, torch.device("cpu"), resume=True, progress=False)
    a = load_checkpoint(checkpoint_path(whole.out_dir, "final"))
    b = load_checkpoint(checkpoint_path(crashed.out_dir, "final"))
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    assert [r["train_hand_loss"] for r in result["history"]] == [r["train_hand_loss"] for r in a["history"]]


def _ddp_worker(rank: int, port: int, preprocessed: Path, out: Path) -> None:
    from autopipe import distributed
    from autopipe.distributed import Ranks

    join_gloo(rank, port)
    fold, workspace = _fold(preprocessed, out)
    train(joint_job(fold, workspace, LABELS, 0.5, 0.1, "3d_fullres", epochs=1, iterations=2), torch.device("cpu"),
          Ranks(rank, 2, rank), progress=False)
    distributed.stop()


def test_two_cpu_processes_train_the_joint_model_with_ddp(preprocessed, tmp_path):
    spawn_two_ranks(_ddp_worker, preprocessed, tmp_path)
    fold, workspace = _fold(preprocessed, tmp_path)
    job = joint_job(fold, workspace, LABELS, 0.5, 0.1, "3d_fullres", epochs=1, iterations=2)
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["kind"] == "joint" and final["history"][0]["train_hand_loss"] > 0
