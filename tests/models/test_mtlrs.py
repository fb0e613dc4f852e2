"""MTLRS and reconstruct-then-segment: shapes, the hidden-state coupling (softmax, live gradient), learning."""

import pytest
import torch

from autopipe.models.attention_unet import AttentionUNet2d
from autopipe.models.cirim import CIRIM
from autopipe.models.mtlrs import MTLRS, MultitaskOutput, ReconstructThenSegment
from autopipe.mri import operators
from autopipe.train.recon_loss import multitask_loss, reconstruction_loss, segmentation_loss
from tests.models.test_rim import make_sample


def _run(net, s):
    return net(s["kspace"], s["maps"], s["mask"])


@pytest.mark.parametrize("cell", ["IndRNN", "ConvGRU"])
def test_mtlrs_gives_every_estimate_and_one_segmentation_per_cascade(cell):
    torch.manual_seed(0)
    s = make_sample(batch=2, H=13, W=10)
    out = _run(MTLRS(cascades=3, time_steps=2, hidden_channels=4, segmentation_channels=2, cell=cell), s)
    assert isinstance(out, MultitaskOutput)
    assert [len(steps) for steps in out.estimates] == [2, 2, 2]
    assert all(e.shape == (2, 13, 10) and e.dtype == torch.complex64 for steps in out.estimates for e in steps)
    assert len(out.segmentations) == 3 and all(x.shape == (2, 2, 13, 10) for x in out.segmentations)
    assert out.image is out.estimates[-1][-1] and out.segmentation is out.segmentations[-1]


def test_reconstruct_then_segment_segments_the_final_magnitude_and_trains_end_to_end():
    torch.manual_seed(0)
    s = make_sample(H=13, W=10)
    cirim, unet = CIRIM(2, 2, 4), AttentionUNet2d(channels=2)
    net = ReconstructThenSegment(cirim, unet)
    out = _run(net, s)
    assert [len(steps) for steps in out.estimates] == [2, 2] and len(out.segmentations) == 1
    assert torch.allclose(out.segmentation, unet(out.image.abs()[:, None]))
    segmentation_loss(out.segmentation, s["segmentation"]).backward()
    assert cirim.blocks[0].conv_in.weight.grad.abs().sum() > 0


def _pair(**kwargs):
    torch.manual_seed(0)
    coupled = MTLRS(coupled=True, **kwargs)
    joint = MTLRS(coupled=False, **kwargs)
    joint.load_state_dict(coupled.state_dict())
    return coupled, joint


def test_coupling_changes_only_what_follows_the_first_cascade():
    s = make_sample(H=12, W=12)
    coupled, joint = _pair(cascades=2, time_steps=2, hidden_channels=4, segmentation_channels=2)
    a, b = _run(coupled, s), _run(joint, s)
    assert all(torch.equal(x, y) for x, y in zip(a.estimates[0], b.estimates[0], strict=True))
    assert torch.equal(a.segmentations[0], b.segmentations[0])
    assert not torch.allclose(a.estimates[1][-1], b.estimates[1][-1])
    assert not torch.allclose(a.segmentations[1], b.segmentations[1])


def test_coupling_adds_magnitude_times_softmax_lesion_probability_to_both_hidden_states():
    torch.manual_seed(0)
    s = make_sample(H=12, W=12)
    net = MTLRS(cascades=2, time_steps=2, hidden_channels=3, segmentation_channels=2)
    seen = {}
    net.reconstructors[0].register_forward_hook(lambda m, args, out: seen.update(first=out))
    net.segmenters[0].register_forward_hook(lambda m, args, out: seen.update(logits=out))
    net.reconstructors[1].register_forward_pre_hook(lambda m, args: seen.update(hidden=args[4]))
    _run(net, s)
    (steps, hidden), logits = seen["first"], seen["logits"]
    coupling = steps[-1].abs()[:, None] * logits.softmax(1)[:, 1:2]
    assert coupling.abs().max() > 0
    for before, after in zip(hidden, seen["hidden"], strict=True):
        assert torch.allclose(after, before + coupling.expand_as(before))


@pytest.mark.parametrize("coupling_classes", [None, (4,)])
def test_coupling_tiles_every_class_probability_over_the_hidden_channels(coupling_classes):
    """Tissue + lesion: hidden channel j gets |x| * p_k with k the (j mod K)-th coupled class (every foreground
    class by default, the lesion alone as the ablation)."""
    torch.manual_seed(1)
    s = make_sample(H=12, W=12)
    net = MTLRS(cascades=2, time_steps=2, hidden_channels=6, segmentation_channels=2, classes=5,
                coupling_classes=coupling_classes)
    seen = {}
    net.reconstructors[0].register_forward_hook(lambda m, args, out: seen.update(first=out))
    net.segmenters[0].register_forward_hook(lambda m, args, out: seen.update(logits=out))
    net.reconstructors[1].register_forward_pre_hook(lambda m, args: seen.update(hidden=args[4]))
    output = _run(net, s)
    assert output.segmentation.shape[1] == 5
    (steps, hidden), logits = seen["first"], seen["logits"]
    classes = [1, 2, 3, 4, 1, 2] if coupling_classes is None else [4] * 6
    coupling = steps[-1].abs()[:, None] * logits.softmax(1)[:, classes]
    for before, after in zip(hidden, seen["hidden"], strict=True):
        assert torch.allclose(after, before + coupling)


def test_coupling_classes_must_be_foreground_classes():
    with pytest.raises(ValueError, match="foreground"):
        MTLRS(cascades=2, time_steps=2, hidden_channels=4, segmentation_channels=2, classes=3, coupling_classes=(0,))
    with pytest.raises(ValueError, match="foreground"):
        MTLRS(cascades=2, time_steps=2, hidden_channels=4, segmentation_channels=2, classes=3, coupling_classes=(3,))


def test_with_coupling_the_first_segmenter_learns_from_the_reconstruction_loss_alone():
    s = make_sample(H=12, W=12)
    coupled, joint = _pair(cascades=2, time_steps=2, hidden_channels=4, segmentation_channels=2)
    for net in (coupled, joint):
        reconstruction_loss(_run(net, s).estimates, s["image"]).backward()
    grads = [p.grad for p in coupled.segmenters[0].parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None or not p.grad.any() for p in joint.segmenters[0].parameters())
    # the last segmenter feeds nothing back, coupled or not
    assert all(p.grad is None for p in coupled.segmenters[1].parameters())


def test_mtlrs_learns_one_sample_with_the_multitask_loss():
    torch.manual_seed(0)
    s = make_sample(H=16, W=16)
    net = MTLRS(cascades=2, time_steps=2, hidden_channels=8, segmentation_channels=8)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        loss, parts = multitask_loss(_run(net, s), s["image"], s["segmentation"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(parts)
    assert history[-1]["total"] < 0.6 * history[0]["total"]
    assert history[-1]["segmentation"] < 0.6 * history[0]["segmentation"]
    zero_filled = reconstruction_loss([[operators.adjoint(s["kspace"], s["maps"], s["mask"])]], s["image"]).item()
    assert history[-1]["reconstruction"] < 1.5 * zero_filled
