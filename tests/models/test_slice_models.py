"""Which models the approaches need, and the warm start of the multitask networks from a trained CIRIM."""

import pytest
import torch

from autopipe.models.slice_models import build_model, models_for, warm_start

RECON = {"cascades": 2, "time_steps": 2, "hidden_channels": 4, "cell": "IndRNN"}
SEG = {"channels": 4, "poolings": 2}


def test_models_for_lists_each_model_once_in_training_order():
    assert models_for(["mtlrs", "sequential", "pretrained"]) == [
        "cirim", "segmentation_fully_sampled", "segmentation_on_cirim", "mtlrs"]
    assert models_for(["end_to_end"]) == ["end_to_end"]


@pytest.mark.parametrize("name", ["end_to_end", "joint", "mtlrs"])
def test_warm_start_copies_every_cascade_of_the_trained_cirim(name):
    torch.manual_seed(0)
    cirim = build_model("cirim", RECON)
    kwargs = {"reconstruction": RECON, "segmentation": SEG} if name == "end_to_end" else {
        **RECON, "segmentation_channels": 4, "poolings": 2, "coupled": name == "mtlrs"}
    network = build_model(name, kwargs)
    blocks = network.reconstruction.blocks if name == "end_to_end" else network.reconstructors
    assert not torch.equal(blocks[1].conv_in.weight, cirim.blocks[1].conv_in.weight)
    segmenter_before = {k: v.clone() for k, v in network.state_dict().items() if "segment" in k}
    warm_start(name, network, cirim.state_dict())
    for block, trained in zip(blocks, cirim.blocks, strict=True):
        for key, value in trained.state_dict().items():
            assert torch.equal(block.state_dict()[key], value), key
    assert all(torch.equal(network.state_dict()[k], v) for k, v in segmenter_before.items())  # untouched


def test_warm_start_refuses_a_model_without_a_reconstruction_part():
    with pytest.raises(ValueError, match="no reconstruction part"):
        warm_start("segmentation_fully_sampled", build_model("segmentation_fully_sampled", SEG), {})


def test_a_zero_coupling_gate_starts_as_the_uncoupled_network_and_learns():
    """coupling_init 0 (an option, no longer the warm start's): the same outputs as `joint` until the gates move;
    they get gradient. So the joint baseline is MTLRS with the coupling removed."""
    from autopipe.train.recon_loss import reconstruction_loss
    from tests.models.test_rim import make_sample

    torch.manual_seed(1)
    kwargs = {**RECON, "segmentation_channels": 4, "poolings": 2}
    coupled = build_model("mtlrs", {**kwargs, "coupled": True, "coupling_init": 0.0})
    uncoupled = build_model("joint", {**kwargs, "coupled": False, "coupling_init": 0.0})
    uncoupled.load_state_dict(coupled.state_dict())
    sample = make_sample(1, 2, 16, 16, 0)
    inputs = (sample["kspace"], sample["maps"], sample["mask"])
    out, ref = coupled(*inputs), uncoupled(*inputs)
    assert torch.equal(out.image, ref.image)
    reconstruction_loss(out.estimates, sample["image"]).backward()
    assert coupled.coupling_gates.grad.abs().sum() > 0
    assert not uncoupled.coupling_gates.requires_grad


def test_the_planned_mtlrs_starts_coupled_even_when_warm_started(tmp_path):
    """The plan's MTLRS (warm start on) has gates 1: its outputs differ from the joint network with the same
    weights from the first step, and only through the coupling (gates set to 0 give joint's outputs)."""
    from autopipe.models.slice_models import COUPLING_INIT, model_kwargs
    from tests.models.test_rim import make_sample

    class Plans:  # the two sections model_kwargs reads
        reconstruction = type("R", (), {"cascades": 2, "time_steps": 2, "hidden_channels": 4,
                                        "recurrent_cell": "IndRNN"})()
        multitask = type("M", (), {"segmentation_channels": 4, "segmentation_poolings": 2, "warm_start": True,
                                   "segmentation_classes": ("background", "csf", "gm", "wm", "lesion"),
                                   "lesion_classes": (4,), "coupling": "every_class"})()

    kwargs = model_kwargs("mtlrs", Plans())
    assert kwargs["coupling_init"] == COUPLING_INIT == 1.0 and kwargs["coupled"]
    assert kwargs["classes"] == 5 and kwargs["coupling_classes"] == [1, 2, 3, 4]  # tissue and lesion coupled
    torch.manual_seed(2)
    cirim = build_model("cirim", RECON)
    coupled = build_model("mtlrs", kwargs)
    warm_start("mtlrs", coupled, cirim.state_dict())
    joint = build_model("joint", model_kwargs("joint", Plans()))
    joint.load_state_dict(coupled.state_dict())
    assert torch.all(coupled.coupling_gates == 1)
    sample = make_sample(1, 2, 16, 16, 0)
    inputs = (sample["kspace"], sample["maps"], sample["mask"])
    with torch.no_grad():
        assert not torch.allclose(coupled(*inputs).image, joint(*inputs).image)
        coupled.coupling_gates.zero_()
        assert torch.equal(coupled(*inputs).image, joint(*inputs).image)


def test_final_cascade_supervision_gives_every_parameter_of_joint_a_gradient():
    """Only the last segmentation counts, but DistributedDataParallel needs a gradient on every parameter: the
    earlier segmenters get zeros, and the loss is the last cascade's alone."""
    from autopipe.train.recon_loss import multitask_loss, segmentation_loss
    from tests.models.test_rim import make_sample

    torch.manual_seed(4)
    joint = build_model("joint", {**RECON, "segmentation_channels": 4, "poolings": 2, "coupled": False})
    sample = make_sample(1, 2, 16, 16, 0)
    target = (sample["image"].abs() > sample["image"].abs().mean()).long()[:, None]
    output = joint(sample["kspace"], sample["maps"], sample["mask"])
    _, parts = multitask_loss(output, sample["image"], target)
    assert parts["segmentation"] == pytest.approx(segmentation_loss(output.segmentations[-1], target).item())
    multitask_loss(output, sample["image"], target)[0].backward()
    grads = {name: p.grad for name, p in joint.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert all(torch.all(g == 0) for name, g in grads.items() if name.startswith("segmenters.0."))
    assert any(torch.any(g != 0) for name, g in grads.items() if name.startswith("segmenters.1."))
