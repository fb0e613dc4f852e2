"""The joint model: the U-Net unchanged, the whole-brain lesion-map head and its loss, tiles, inference, a fold."""

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from autopipe.cohort.dataset import ClinicalSpec, DatasetSpec
from autopipe.distributed import Ranks
from autopipe.errors import AutopipeError
from autopipe.layout import case_paths, fold_dir, joint_name
from autopipe.models.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from autopipe.models.joint_unet import Brain, JointUNet, build_joint_network, tile, untile
from autopipe.models.lesion_map_head import LesionMapHead
from autopipe.models.unet import PlainConvUNet
from autopipe.paths import Workspace
from autopipe.plan.configs import HandFunctionPlan, JointPlan
from autopipe.predict.hand_inference import predict_hand_probability, predict_joint_validation
from autopipe.predict.models import TrainedModel, load_model
from autopipe.preprocess.folds import Fold
from autopipe.preprocess.storage import write_case_arrays
from autopipe.train import fit as trainer_module
from autopipe.train.fit import fit as train
from autopipe.train.fit import train_jobs
from autopipe.train.jobs import joint_job, training_jobs
from autopipe.train.joint_loss import hand_loss, joint_loss, pos_weight_for
from tests.case_properties import case_properties
from tests.ddp import join_gloo, spawn_two_ranks
from tests.train.test_trainer import tiny_config

PLAN_3D = dict(features_per_stage=(2, 4, 8), kernel_sizes=((3, 3, 3),) * 3, strides=((1, 1, 1), (2, 2, 2), (2, 2, 2)))
PLAN_2D = dict(features_per_stage=(2, 4, 8), kernel_sizes=((3, 3),) * 3, strides=((1, 1), (2, 2), (2, 2)))
SMALL_3D = dict(features_per_stage=(2, 4), kernel_sizes=((3, 3, 3),) * 2, strides=((1, 1, 1), (2, 2, 2)))
CASES = tuple(f"c{i}" for i in range(8))
LABELS = {case: i % 2 for i, case in enumerate(CASES)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


GEOMETRY = {"fine_shape": [12, 10, 9], "factor": [2, 2, 3], "cells": [0, 5, 17, 29], "voxel_ml": 0.008}


def _joint(plan: dict, patch: tuple[int, ...], seed: int = 0, order: tuple[int, ...] = (0, 1, 2),
           head: dict = GEOMETRY, **kwargs) -> JointUNet:
    torch.manual_seed(seed)
    return JointUNet(kwargs.pop("in_channels", 1), 2, **plan, hand_head=head, patch_size=patch,
                     transpose_forward=order, **kwargs)


@pytest.mark.parametrize(("plan", "shape"), [(PLAN_3D, (2, 1, 8, 8, 8)), (PLAN_2D, (3, 1, 8, 12))])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_the_joint_forward_is_the_plain_u_net_given_its_weights(plan, shape, deep_supervision):
    torch.manual_seed(0)
    plain = PlainConvUNet(1, 2, **plan, deep_supervision=deep_supervision)
    joint = _joint(plan, (8,) * (len(shape) - 2), deep_supervision=deep_supervision)
    result = joint.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == ["hand_head.bias", "hand_head.weight"]
    x = torch.randn(shape)
    expected, got = plain(x), joint(x)
    for a, b in zip(expected if deep_supervision else [expected], got if deep_supervision else [got], strict=True):
        assert torch.equal(a, b)


def test_one_seed_builds_the_same_u_net_with_or_without_the_head():
    torch.manual_seed(3)
    plain = PlainConvUNet(1, 2, **PLAN_3D)
    joint = _joint(PLAN_3D, (8, 8, 8), seed=3)
    assert all(torch.equal(v, joint.state_dict()[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("shape", [(1, 2, 8, 8, 8), (3, 1, 5, 7, 9), (2, 3, 9, 4)])
def test_tiles_put_back_give_the_images(shape):
    images = torch.randn(shape)
    patch = (4,) * (len(shape) - 2)
    tiles = tile(images, patch)
    counts = [-(-s // 4) for s in shape[2:]]
    assert tiles.shape == (shape[0] * math.prod(counts), shape[1], *patch)
    for channel in range(shape[1]):
        assert torch.equal(untile(tiles[:, channel], shape[2:]), images[:, channel])


def test_tiles_are_the_patches_in_order_with_zero_padding():
    image = torch.arange(6 * 5, dtype=torch.float32).reshape(1, 1, 6, 5)
    tiles = tile(image, (4, 4))
    assert torch.equal(tiles[0, 0], image[0, 0, :4, :4])
    assert torch.equal(tiles[1, 0, :, :1], image[0, 0, :4, 4:]) and not tiles[1, 0, :, 1:].any()
    assert torch.equal(tiles[2, 0, :2], image[0, 0, 4:, :4]) and not tiles[2, 0, 2:].any()


def test_the_head_pools_expected_lesion_ml_as_the_lesion_features_pool_masks():
    from autopipe.models.lesion_features import coarse_grid, pool_ml

    affine = np.diag([2.0, 2.0, 4 / 3, 1.0])
    grid = coarse_grid((11, 10, 8), affine, 4.0)  # cells of 2 x 2 x 3 voxels, the last ones zero-padded
    assert list(grid.factor) == [2, 2, 3] and list(grid.shape) == [6, 5, 3]
    head = LesionMapHead(grid.fine_shape, grid.factor, GEOMETRY["cells"], grid.fine_voxel_ml)
    mask = np.random.default_rng(0).random(grid.fine_shape) > 0.7
    loads = head.cell_loads(torch.from_numpy(mask.astype(np.float32))[None])
    expected = pool_ml(mask, grid).ravel()[GEOMETRY["cells"]]
    assert np.allclose(loads[0].numpy(), expected, rtol=1e-6)
    head.set_classifier([1.0, -2.0, 0.5, 3.0], -0.25)
    with torch.no_grad():
        logit = float(head(torch.from_numpy(mask.astype(np.float32))[None])[0])
    assert logit == pytest.approx(-0.25 + expected @ np.array([1.0, -2.0, 0.5, 3.0]), rel=1e-5)
    with pytest.raises(ValueError, match="lesion probabilities"):
        head(torch.zeros(1, 12, 10, 8))
    assert head.geometry() == {"fine_shape": [11, 10, 8], "factor": [2, 2, 3], "cells": GEOMETRY["cells"],
                               "voxel_ml": grid.fine_voxel_ml}
    with pytest.raises(ValueError, match="weights for"):
        head.set_classifier([1.0], 0.0)
    with pytest.raises(ValueError, match="flat indices"):
        LesionMapHead(grid.fine_shape, grid.factor, [10_000], 0.008)


@pytest.mark.parametrize(("plan", "patch", "order"), [(PLAN_3D, (8, 8, 8), (0, 1, 2)), (PLAN_3D, (8, 8, 8), (2, 0, 1)),
                                                      (PLAN_2D, (8, 8), (1, 2, 0))])
def test_the_lesion_map_is_the_networks_output_on_the_full_grid(plan, patch, order, monkeypatch):
    """With a U-Net whose lesion logit is 2x the voxel's value, P(lesion) must be sigmoid(2 x) at each voxel of
    the crop, put where the crop box says, whatever the axis order and the tiling."""
    net = _joint(plan, patch, order=order)
    monkeypatch.setattr(PlainConvUNet, "forward", lambda self, x: torch.cat([-x, x], dim=1))
    image = torch.randn(1, 7, 9, 5)
    box = ((2, 9), (0, 9), (3, 8))
    probability = net.lesion_probability(Brain(image, box))
    assert probability.shape == (12, 10, 9)
    assert torch.allclose(probability[2:9, :9, 3:8], torch.sigmoid(2 * image[0]), atol=1e-6)
    outside = torch.ones_like(probability, dtype=torch.bool)
    outside[2:9, :9, 3:8] = False
    assert not probability[outside].any()
    with pytest.raises(ValueError, match="does not fit"):
        net.lesion_probability(Brain(image, ((6, 13), (0, 9), (3, 8))))


def test_the_hand_loss_reaches_the_head_and_the_u_net_and_no_brain_still_gives_every_parameter_a_gradient():
    net = _joint(PLAN_3D, (8, 8, 8))
    net.hand_head.set_classifier([1.0, -2.0, 0.5, 3.0], 0.0)  # with zero weights no gradient passes the head
    brains = [Brain(torch.randn(1, 12, 10, 9), ((0, 12), (0, 10), (0, 9))) for _ in range(2)]
    _, logits = net(torch.randn(2, 1, 8, 8, 8), brains=brains)
    assert logits.shape == (2,)
    hand_loss(logits, torch.tensor([0.0, 1.0]), 1.0).backward()
    assert net.hand_head.weight.grad.abs().sum() > 0
    convolutions = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convolutions)
    net.zero_grad()
    outputs, empty = net(torch.randn(2, 1, 8, 8, 8), brains=[])
    assert empty.shape == (0,)
    (outputs[0].sum() + 0.0 * empty.sum()).backward()
    assert net.hand_head.weight.grad is not None and not net.hand_head.weight.grad.any()


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


def test_a_few_joint_steps_learn_which_brains_hold_a_lesion_in_the_cell_that_matters():
    rng = np.random.default_rng(0)
    brains, labels = [], []
    for i in range(6):
        image = rng.normal(0, 0.3, (1, 12, 10, 9)).astype(np.float32)
        x = 0 if i % 2 else 6  # impaired subjects' lesion in cell 0, the others' in a cell the head lacks
        image[0, x:x + 2, :2, :3] += 3
        brains.append(Brain(torch.from_numpy(image), ((0, 12), (0, 10), (0, 9))))
        labels.append(i % 2)
    net = _joint(SMALL_3D, (4, 4, 4), head={**GEOMETRY, "voxel_ml": 1.0})
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-2)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = hand_loss(net.brain_logits(brains), torch.tensor(labels, dtype=torch.float32), 1.0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def _model(plan: dict, patch: tuple[int, ...], seed: int, name: str = "m") -> TrainedModel:
    net = _joint(plan, patch, seed=seed, deep_supervision=False).eval()
    with torch.no_grad():
        net.hand_head.weight.normal_(0, 10, generator=torch.Generator().manual_seed(seed))
    return TrainedModel(net, patch, (0, 1, 2), 1, 2, "joint_3d_fullres", "0", Path(name))


BOX = ((2, 10), (2, 8), (2, 7))


def test_hand_probability_of_an_ensemble_is_a_probability_whatever_the_order():
    image = np.random.default_rng(0).normal(1, 1, (1, 8, 6, 5)).astype(np.float32)
    models = [_model(PLAN_3D, (8, 8, 8), 1), _model(PLAN_3D, (8, 8, 8), 2), _model(PLAN_2D, (8, 8), 3)]
    p = predict_hand_probability(models, image, BOX, torch.device("cpu"))
    assert 0 <= p <= 1
    assert predict_hand_probability(models[::-1], image, BOX, torch.device("cpu")) == p
    assert 0 <= predict_hand_probability(models[2:], np.zeros_like(image), BOX, torch.device("cpu")) <= 1


def test_hand_probability_is_the_heads_sigmoid_on_the_whole_brain_lesion_map():
    model = _model(PLAN_3D, (8, 8, 8), 1)
    image = np.random.default_rng(1).normal(0, 1, (1, 8, 6, 5)).astype(np.float32)
    with torch.no_grad():
        lesion = model.network.lesion_probability(Brain(torch.from_numpy(image), BOX))
        expected = torch.sigmoid(model.network.hand_head(lesion[None]))[0].item()
    assert predict_hand_probability([model], image, BOX, torch.device("cpu")) == pytest.approx(expected, rel=1e-6)
    assert lesion[:2].abs().sum() == 0 and lesion[2:10, 2:8, 2:7].min() > 0


def test_a_plain_model_has_no_hand_probability():
    net = PlainConvUNet(1, 2, **PLAN_3D, deep_supervision=False)
    model = TrainedModel(net, (8, 8, 8), (0, 1, 2), 1, 2, "3d_fullres", "0", Path("plain"))
    with pytest.raises(ValueError, match="without a hand-function head"):
        predict_hand_probability([model], np.ones((1, 8, 6, 5), np.float32), BOX, torch.device("cpu"))


def _joint_kwargs(head: object = GEOMETRY) -> dict:
    return {"in_channels": 1, "num_classes": 2, **{k: [list(v) for v in vs] if k != "features_per_stage"
                                                    else list(vs) for k, vs in PLAN_3D.items()},
            "n_conv_per_stage": 2, "deep_supervision": True, "hand_head": head, "patch_size": [8, 8, 8],
            "transpose_forward": [0, 1, 2]}


def test_a_joint_checkpoint_loads_as_a_joint_model(tmp_path):
    net = _joint(PLAN_3D, (8, 8, 8))
    path = save_checkpoint(tmp_path / "checkpoint_final.pt", {
        "kind": "joint", "epoch": 1, "network_kwargs": _joint_kwargs(), "network": net.state_dict(),
        "patch_size": [8, 8, 8], "transpose_forward": [0, 1, 2], "configuration": "joint_3d_fullres", "fold": "0",
        "hand_weight": 0.5})
    model = load_model(path, torch.device("cpu"))
    assert isinstance(model.network, JointUNet) and not model.network.deep_supervision
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in net.state_dict().items())
    x = torch.randn(1, 1, 8, 8, 8)
    net.eval()
    brain = Brain(torch.randn(1, 12, 10, 9), ((0, 12), (0, 10), (0, 9)))
    assert torch.equal(model.network.brain_logits([brain]), net.brain_logits([brain]))
    assert torch.equal(model.network(x), net(x)[0])


def test_a_checkpoint_of_the_earlier_patch_head_asks_to_retrain(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint_final.pt", {
        "kind": "joint", "epoch": 1, "network_kwargs": _joint_kwargs(True), "network": {}, "patch_size": [8, 8, 8],
        "transpose_forward": [0, 1, 2], "configuration": "joint_3d_fullres", "fold": "0", "hand_weight": 0.5})
    with pytest.raises(AutopipeError, match="earlier autopipe") as error:
        load_model(path, torch.device("cpu"))
    assert "--force" in error.value.fix


def test_build_joint_network_follows_the_plan():
    net = build_joint_network(tiny_config(), 2, 2, GEOMETRY, (2, 0, 1))
    assert isinstance(net, JointUNet) and net.hand_head.weight.shape == (4,) and net.in_channels == 2
    assert net.patch_size == (16, 16, 16) and net.transpose_forward == (2, 0, 1)


# --- a fold of the joint model, on a tiny preprocessed folder -------------------------------------------------

FULL_SHAPE = (20, 24, 20)
AFFINE = np.array([[8.0, 0, 0, -80], [0, 8.0, 0, -112], [0, 0, 8.0, -60], [0, 0, 0, 1]])
CROP = ((2, 18), (2, 22), (2, 18))
HAND_PLAN = HandFunctionPlan(features=("lesion_map",), c_grid=(0.1, 1.0, 10.0), class_weight="balanced",
                             inner_folds=2, grid_mm=16.0, configuration="3d_fullres", smoothing_mm=(0.0, 16.0))


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    """Eight template-space cases; the impaired ones (odd) hold their lesion in one place, the others elsewhere."""
    folder = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(0)
    for i, case in enumerate(CASES):
        shape = tuple(hi - lo for lo, hi in CROP)
        seg = np.zeros(shape, np.uint8)
        x = 8 if LABELS[case] else 3
        seg[x:x + 3, 8:11, 6:9] = 1
        image = rng.normal(0, 1, (1, *shape)).astype(np.float32) + 2 * seg
        write_case_arrays(case_paths(folder, case)[0], image, np.ones(shape, np.uint8), seg, seed=i)
        properties = case_properties(case, full_shape=FULL_SHAPE, affine=AFFINE, crop_box=CROP)
        case_paths(folder, case)[1].write_text(json.dumps(properties.to_json()))
    return folder


def _fold(preprocessed: Path, tmp_path: Path, plain: bool = True) -> tuple[Fold, Workspace]:
    """Fold 0 (six training, two validation cases) in a workspace under tmp_path, its plain U-Net trained."""
    spec = DatasetSpec(root=tmp_path / "raw" / "Dataset001_Tiny", channel_names={0: "FLAIR"},
                       labels={"background": 0, "lesion": 1}, num_training=len(CASES), file_ending=".nii.gz",
                       clinical=ClinicalSpec())
    plans = SimpleNamespace(configurations={"3d_fullres": tiny_config()}, transpose_forward=(0, 1, 2),
                            preprocessing=SimpleNamespace(num_channels=1), hand_function=HAND_PLAN,
                            joint=JointPlan(hand_function_weight=0.1, brain_every=2))
    workspace = Workspace(*(tmp_path / name for name in ("raw", "plans", "preprocessed", "results")))
    fold = Fold(spec, plans, preprocessed, "abc", "0", CASES[:6], CASES[6:])
    if plain and not checkpoint_path(fold_dir(workspace, spec.name, "3d_fullres", "0"), "final").is_file():
        train(training_jobs(fold, workspace, ["3d_fullres"], epochs=1, iterations=2)[0], torch.device("cpu"),
              progress=False)
    return fold, workspace


def test_joint_names():
    assert joint_name("3d_fullres", 0.1, 0.1) == "joint_3d_fullres"
    assert joint_name("3d_fullres", 0.5, 0.1) == "joint_3d_fullres_r0.5"
    assert joint_name("2d", 1.0, 0.1) == "joint_2d_r1"


def test_a_joint_job_is_the_segmentation_job_with_labels_r_and_the_head_built_on_the_plain_u_net(preprocessed,
                                                                                               tmp_path):
    fold, workspace = _fold(preprocessed, tmp_path, plain=False)
    plain = training_jobs(fold, workspace, ["3d_fullres"], epochs=2)[0]
    job = joint_job(fold, workspace, {**LABELS, "c7": None}, 0.5, 0.1, "3d_fullres", epochs=2)
    assert job.name == "joint_3d_fullres_r0.5" and job.task.hand_weight == 0.5 and job.task.joint \
        and not plain.task.joint
    assert job.out_dir == workspace.results / "Dataset001_Tiny" / "joint_3d_fullres_r0.5" / "fold_0"
    assert dict(job.task.hand_labels) == {c: LABELS[c] for c in CASES[:7]}  # c7 (validation) has no label
    assert job.task.settings == plain.task.settings and job.task.config == plain.task.config
    head = job.task.network_kwargs()["hand_head"]
    assert job.task.network_kwargs() == {**plain.task.network_kwargs(), "hand_head": head,
                                         "patch_size": [16, 16, 16], "transpose_forward": [0, 1, 2]}
    assert head["fine_shape"] == list(FULL_SHAPE) and head["factor"] == [2, 2, 2] and head["cells"]
    assert head["voxel_ml"] == pytest.approx(0.512)
    assert job.builds_on.checkpoint == checkpoint_path(plain.out_dir, "final")
    with pytest.raises(AutopipeError, match="not trained"):
        train_jobs([job], torch.device("cpu"), Ranks(), progress=False)


def test_a_joint_job_needs_both_classes_and_trains_unlabelled_cases_on_segmentation_only(preprocessed, tmp_path,
                                                                                          caplog):
    fold, workspace = _fold(preprocessed, tmp_path, plain=False)
    with caplog.at_level("WARNING", logger="autopipe"):
        job = joint_job(fold, workspace, {"c0": 0, "c2": 1}, 0.1, 0.1, "3d_fullres")
    assert "c1" in caplog.text and dict(job.task.hand_labels) == {"c0": 0, "c2": 1}
    with pytest.raises(AutopipeError, match="both") as error:
        joint_job(fold, workspace, {"c0": 1, "c1": 1, "c2": 1}, 0.1, 0.1, "3d_fullres")
    assert "clinical.csv" in error.value.where
    with pytest.raises(AutopipeError, match="r > 0"):
        joint_job(fold, workspace, LABELS, 0.0, 0.1, "3d_fullres")


def test_the_joint_model_starts_from_the_plain_u_net_and_a_head_fitted_on_its_maps(preprocessed, tmp_path):
    from autopipe.models.lesion_features import smooth_cells
    from autopipe.train.hand_classifier import Smoothing, fit_classifier
    from autopipe.train.joint_start import BrainSource, warm_start

    fold, workspace = _fold(preprocessed, tmp_path)
    job = joint_job(fold, workspace, LABELS, 0.1, 0.1, "3d_fullres")
    network = job.task.build()
    train_labels = {c: LABELS[c] for c in fold.train_cases}
    brains = BrainSource(preprocessed, torch.device("cpu"))
    warm_start(network, job.builds_on.checkpoint, brains, train_labels, job.task.joint_settings, 0)
    plain = load_checkpoint(job.builds_on.checkpoint)["network"]
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in plain.items())
    settings = job.task.joint_settings
    with torch.no_grad():
        loads = np.stack([network.hand_head.cell_loads(network.lesion_probability(brains(c))[None])[0].double()
                          .numpy() for c in sorted(train_labels)])
    cells = np.asarray(settings.cells)
    expected = fit_classifier(loads, [train_labels[c] for c in sorted(train_labels)], [f"cell_{c}" for c in cells],
                              c_grid=HAND_PLAN.c_grid, class_weight=HAND_PLAN.class_weight,
                              inner_folds=HAND_PLAN.inner_folds, standardize=[False] * len(cells), seed=0,
                              smoothing=Smoothing(np.ones(len(cells), bool), HAND_PLAN.smoothing_mm,
                                                  lambda rows, sigma: smooth_cells(rows, settings.grid, cells, sigma)))
    assert np.allclose(network.hand_head.weight.detach().numpy(), expected.weights, rtol=1e-5, atol=1e-7)
    assert float(network.hand_head.bias.detach()) == pytest.approx(expected.intercept, rel=1e-5)
    assert np.abs(expected.weights).sum() > 0


def test_a_joint_fold_trains_and_predicts_its_held_out_cases(preprocessed, tmp_path):
    fold, workspace = _fold(preprocessed, tmp_path)
    job = joint_job(fold, workspace, LABELS, 0.1, 0.1, "3d_fullres", epochs=2, iterations=2)
    result = train_jobs([job], torch.device("cpu"), Ranks(), progress=False)[0]
    history = json.loads((job.out_dir / "progress.json").read_text())
    assert result["state"] == "trained" and len(history) == 2 and (job.out_dir / "progress.png").is_file()
    assert all(r["train_hand_loss"] > 0 and r["val_hand_loss"] > 0 and r["train_loss"] > 0 for r in history)
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["kind"] == "joint" and final["hand_weight"] == 0.1
    assert final["network_kwargs"]["hand_head"]["cells"] == list(job.task.joint_settings.cells)

    report = predict_joint_validation(job.out_dir, job.task.hand_weight, fold, LABELS, torch.device("cpu"),
                                      progress=False)
    assert report == json.loads((job.out_dir / "hand_function.json").read_text())
    assert report["model"] == "joint_3d_fullres" and report["r"] == 0.1 and report["fold"] == "0"
    assert list(report["cases"]) == ["c6", "c7"] and report["cases"]["c7"]["label"] == 1
    assert all(0 <= v["probability"] <= 1 for v in report["cases"].values())


def test_brain_steps_cycle_through_the_labelled_training_subjects_in_a_seeded_order(preprocessed, tmp_path):
    from autopipe.train.segmentation_task import hand_term

    fold, workspace = _fold(preprocessed, tmp_path, plain=False)
    job = joint_job(fold, workspace, LABELS, 0.1, 0.1, "3d_fullres", epochs=2, iterations=6)
    hand = hand_term(job.task, job, torch.device("cpu"))
    assert hand.every == 2 and hand.val_cases == ("c6", "c7")
    steps = [hand.step_cases(epoch, step, 6, Ranks()) for epoch in range(2) for step in range(6)]
    assert steps[1::2] == [[]] * 6
    chosen = [s[0] for s in steps[0::2]]
    assert sorted(chosen) == sorted(fold.train_cases)  # 6 brain steps: each training subject once
    two = [hand.step_cases(0, 0, 6, Ranks(r, 2, r))[0] for r in range(2)]
    assert two == chosen[:2]  # two ranks take the first two subjects of the same order


def test_held_out_labels_do_not_reach_the_joint_network(preprocessed, tmp_path):
    """They only give the validation curve: flipping them leaves every trained weight as it was."""
    fold, workspace = _fold(preprocessed, tmp_path)
    weights = []
    for held_out_label in (1, 0):
        job = joint_job(fold, workspace, {**LABELS, "c7": held_out_label}, 0.1, 0.1, "3d_fullres", epochs=1,
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
    fold, elsewhere = _fold(preprocessed, tmp_path / "again")
    crashed = joint_job(fold, elsewhere, LABELS, 0.5, 0.1, "3d_fullres", epochs=3, iterations=2)
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

    join_gloo(rank, port)
    fold, workspace = _fold(preprocessed, out, plain=False)
    train(joint_job(fold, workspace, LABELS, 0.5, 0.1, "3d_fullres", epochs=1, iterations=2), torch.device("cpu"),
          Ranks(rank, 2, rank), progress=False)
    distributed.stop()


def test_two_cpu_processes_train_the_joint_model_with_ddp(preprocessed, tmp_path):
    fold, workspace = _fold(preprocessed, tmp_path)  # the plain U-Net, trained once before the ranks start
    spawn_two_ranks(_ddp_worker, preprocessed, tmp_path)
    job = joint_job(fold, workspace, LABELS, 0.5, 0.1, "3d_fullres", epochs=1, iterations=2)
    final = load_checkpoint(checkpoint_path(job.out_dir, "final"))
    assert final["kind"] == "joint" and final["history"][0]["train_hand_loss"] > 0
