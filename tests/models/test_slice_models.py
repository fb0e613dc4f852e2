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
    """coupling_init 0 (warm start): the same outputs as `joint` until the gates move; they get gradient."""
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
