"""RIM cells and blocks, CIRIM: shapes, the identity with a zero update, the likelihood-gradient input, training."""

import math

import pytest
import torch

from autopipe.models.cirim import CIRIM, final_image
from autopipe.models.rim import RECURRENT_CELLS, ConvGRUCell, IndRNNCell, RIMBlock
from autopipe.mri import operators
from autopipe.train.recon_loss import reconstruction_loss


def make_sample(batch: int = 1, coils: int = 3, H: int = 20, W: int = 18, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny phantom (ellipse with a bright square lesion, smooth phase), smooth normalized coil maps,
    a random 2D mask with a fully sampled centre, the undersampled k-space and the lesion labels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    head = ((yy / 0.85) ** 2 + (xx / 0.75) ** 2 <= 1).float()
    lesion = torch.zeros(H, W)
    lesion[H // 2 - 2:H // 2 + 2, W // 2 + 1:W // 2 + 5] = 1
    magnitude = 0.6 * head + 0.4 * lesion + 0.2 * head * (yy > 0.3).float()
    image = (magnitude * torch.exp(1j * 0.5 * (xx + yy))).to(torch.complex64)
    centres = [(math.cos(2 * math.pi * c / coils), math.sin(2 * math.pi * c / coils)) for c in range(coils)]
    maps = torch.stack([torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5) * torch.exp(1j * (c + 0.3 * xx))
                        for c, (cy, cx) in enumerate(centres)]).to(torch.complex64)
    maps = operators.normalize_maps(maps)
    mask = (torch.rand(batch, H, W, generator=g) < 0.3).float()
    mask[:, H // 2 - 3:H // 2 + 3, W // 2 - 3:W // 2 + 3] = 1
    image, maps = image.expand(batch, H, W).clone(), maps.expand(batch, coils, H, W).clone()
    kspace = operators.forward(image, maps, mask)
    segmentation = lesion.long().expand(batch, 1, H, W).clone()
    return dict(kspace=kspace, maps=maps, mask=mask, image=image, segmentation=segmentation)


@pytest.mark.parametrize("cell", sorted(RECURRENT_CELLS))
def test_cells_keep_the_hidden_shape(cell):
    torch.manual_seed(0)
    layer = RECURRENT_CELLS[cell](3, 5, kernel_size=3, dilation=2)
    h = layer(torch.randn(2, 3, 7, 6), torch.zeros(2, 5, 7, 6))
    assert h.shape == (2, 5, 7, 6) and h.dtype == torch.float32


def test_indrnn_recurrence_is_element_wise():
    torch.manual_seed(0)
    layer = IndRNNCell(2, 3)
    x, h = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    expected = torch.relu(layer.ih(x) + layer.hh * h)
    assert torch.allclose(layer(x, h), expected)
    assert layer.hh.shape == (1, 3, 1, 1)


def test_convgru_with_saturated_update_gate_keeps_the_hidden_state():
    layer = ConvGRUCell(2, 3)
    with torch.no_grad():
        layer.ih.bias[3:6] = 100.0  # z = sigmoid(large) = 1 -> h' = h
    h = torch.randn(1, 3, 4, 4)
    assert torch.allclose(layer(torch.randn(1, 2, 4, 4), h), h, atol=1e-5)


@pytest.mark.parametrize("cell", sorted(RECURRENT_CELLS))
def test_rim_block_returns_every_step_and_two_hidden_states(cell):
    torch.manual_seed(0)
    s = make_sample(batch=2, H=12, W=10)
    block = RIMBlock(hidden_channels=4, time_steps=3, cell=cell)
    x0 = operators.adjoint(s["kspace"], s["maps"], s["mask"])
    estimates, hidden = block(x0, s["kspace"], s["maps"], s["mask"])
    assert len(estimates) == 3
    assert all(e.shape == (2, 12, 10) and e.dtype == torch.complex64 for e in estimates)
    assert len(hidden) == 2 and all(h.shape == (2, 4, 12, 10) for h in hidden)
    assert not torch.equal(estimates[0], estimates[1])


def test_rim_with_zero_last_conv_returns_its_input_at_every_step():
    torch.manual_seed(0)
    s = make_sample(H=12, W=10)
    block = RIMBlock(hidden_channels=4, time_steps=3)
    torch.nn.init.zeros_(block.conv_out.weight)
    torch.nn.init.zeros_(block.conv_out.bias)
    x0 = operators.adjoint(s["kspace"], s["maps"], s["mask"])
    estimates, _ = block(x0, s["kspace"], s["maps"], s["mask"])
    assert all(torch.equal(e, x0) for e in estimates)


def test_likelihood_gradient_input_vanishes_at_the_truth_with_noiseless_full_sampling():
    s = make_sample(H=12, W=10)
    full = torch.ones_like(s["mask"])
    kspace = operators.forward(s["image"], s["maps"], full)
    inputs = RIMBlock.inputs(s["image"], kspace, s["maps"], full)
    assert inputs.shape == (1, 4, 12, 10)
    assert torch.allclose(inputs[:, 0] + 1j * inputs[:, 1], s["image"])
    assert inputs[:, 2:].abs().max() < 1e-5
    # away from the truth it does not vanish
    assert RIMBlock.inputs(s["image"] * 0.5, kspace, s["maps"], full)[:, 2:].abs().max() > 0.1


def test_rim_block_rejects_an_unknown_cell():
    with pytest.raises(ValueError, match="cell"):
        RIMBlock(cell="LSTM")


@pytest.mark.parametrize("cell", sorted(RECURRENT_CELLS))
def test_cirim_gives_cascades_times_steps_estimates(cell):
    torch.manual_seed(0)
    s = make_sample(batch=2, H=12, W=10)
    net = CIRIM(cascades=3, time_steps=2, hidden_channels=4, cell=cell)
    estimates = net(s["kspace"], s["maps"], s["mask"])
    assert [len(steps) for steps in estimates] == [2, 2, 2]
    assert all(e.shape == (2, 12, 10) and e.dtype == torch.complex64 for steps in estimates for e in steps)
    assert final_image(estimates) is estimates[-1][-1]
    # each cascade has its own parameters
    assert net.blocks[0].conv_in.weight.data_ptr() != net.blocks[1].conv_in.weight.data_ptr()


def test_cirim_starts_from_zero_filled_and_carries_hidden_states():
    torch.manual_seed(0)
    s = make_sample(H=12, W=10)
    net = CIRIM(cascades=2, time_steps=2, hidden_channels=4)
    estimates = net(s["kspace"], s["maps"], s["mask"])
    x0 = operators.adjoint(s["kspace"], s["maps"], s["mask"])
    first, hidden = net.blocks[0](x0, s["kspace"], s["maps"], s["mask"])
    second, _ = net.blocks[1](first[-1], s["kspace"], s["maps"], s["mask"], hidden)
    fresh, _ = net.blocks[1](first[-1], s["kspace"], s["maps"], s["mask"])
    assert all(torch.allclose(a, b) for a, b in zip(estimates[0] + estimates[1], first + second, strict=True))
    assert not torch.allclose(second[-1], fresh[-1])


@pytest.mark.parametrize("cell", sorted(RECURRENT_CELLS))
def test_cirim_learns_one_sample_beyond_the_zero_filled_image(cell):
    torch.manual_seed(0)
    s = make_sample(H=16, W=16)
    zero_filled = reconstruction_loss([[operators.adjoint(s["kspace"], s["maps"], s["mask"])]], s["image"]).item()
    net = CIRIM(cascades=2, time_steps=2, hidden_channels=16, cell=cell)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(100):  # ~5 ms a step; 30 steps only undo the first Adam steps' overshoot
        loss = reconstruction_loss(net(s["kspace"], s["maps"], s["mask"]), s["image"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] < 1.2 * zero_filled  # the small output init starts near the zero-filled image
    assert losses[-1] < 0.7 * losses[0] and losses[-1] < 0.7 * zero_filled
