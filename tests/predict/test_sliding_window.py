"""Sliding-window inference against the network applied to the whole image at once."""

import itertools
import math

import pytest
import torch
from torch import nn

from autopipe.predict.sliding_window import (
    gaussian_importance,
    predict_volume_logits,
    sliding_window_logits,
    window_starts,
)


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _conv(dim: int, c_in: int, c_out: int, kernel, seed: int = 0) -> nn.Module:
    """A fixed conv (zero padding keeps the size); in eval mode, without gradients."""
    conv = (nn.Conv2d if dim == 2 else nn.Conv3d)(c_in, c_out, kernel, padding="same")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator))
    return conv.eval().requires_grad_(False)


def _asymmetric_3d() -> nn.Module:
    """1 -> 2 channels, a 3-tap kernel along spatial axis 0 that is not mirror-symmetric; pointwise on axes 1, 2."""
    conv = nn.Conv3d(1, 2, (3, 1, 1), padding=(1, 0, 0), bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, -3.0], [0.5, -1.0, 2.0]]).reshape(2, 1, 3, 1, 1))
    return conv.eval().requires_grad_(False)


def _whole(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network(image[None])[0]


@pytest.mark.parametrize(("size", "patch", "step", "expected"), [
    (10, 4, 0.5, [0, 2, 4, 6]),
    (4, 4, 0.5, [0]),
    (5, 4, 0.5, [0, 1]),
    (11, 4, 0.5, [0, 2, 4, 5, 7]),  # 5 windows, 1.75 apart, rounded half up
    (12, 4, 1.0, [0, 4, 8]),
    (13, 4, 1.0, [0, 3, 6, 9]),
])
def test_window_starts_hand_computed(size, patch, step, expected):
    assert window_starts(size, patch, step) == expected


def test_window_starts_cover_every_index_evenly():
    for size, step in itertools.product(range(1, 40), (0.25, 0.5, 1.0)):
        for patch in range(1, size + 1):
            starts = window_starts(size, patch, step)
            covered = {i for s in starts for i in range(s, s + patch)}
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert covered == set(range(size)) and starts[0] == 0 and starts[-1] == size - patch
            assert all(0 < g <= max(1, math.ceil(patch * step)) for g in gaps)
            assert not gaps or max(gaps) - min(gaps) <= 1


def test_window_starts_rejects_a_patch_larger_than_the_image():
    with pytest.raises(ValueError, match="pad"):
        window_starts(3, 4)


def test_gaussian_importance_peaks_at_the_centre_and_is_symmetric():
    odd = gaussian_importance((5, 7, 9))
    assert odd.shape == (5, 7, 9) and odd.dtype == torch.float32
    assert odd[2, 3, 4] == 1.0 and odd.max() == 1.0
    even = gaussian_importance((8, 6))
    assert even.shape == (8, 6) and torch.all(even[3:5, 2:4] == 1.0)
    for weight in (odd, even):
        assert (weight > 0).all()
        for axis in range(weight.ndim):
            torch.testing.assert_close(weight, weight.flip(axis))


def test_gaussian_importance_never_gives_zero_weight():
    weight = gaussian_importance((64, 3), sigma_scale=0.005)  # exp(-5000) at the border underflows
    assert (weight > 0).all() and weight.max() == 1.0


@pytest.mark.parametrize("shape", [(7, 13, 9), (8, 8, 8), (21, 17, 19), (7, 13), (8, 8), (21, 17)])
@pytest.mark.parametrize("mirror", [False, True])
def test_pointwise_network_matches_the_whole_image(shape, mirror):
    dim = len(shape)
    network = _conv(dim, 2, 3, 1)
    image = _image(2, *shape)
    mirror_axes = tuple(range(dim)) if mirror else ()
    logits = sliding_window_logits(network, image, (8,) * dim, num_classes=3, mirror_axes=mirror_axes)
    assert logits.shape == (3, *shape) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    torch.testing.assert_close(logits, _whole(network, image), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("patch", [(6, 5, 7), (8, 8, 8)])
def test_mirroring_flips_the_logits_back(patch):
    network, image = _asymmetric_3d(), _image(1, 6, 5, 7)  # the patch covers the whole (padded) image
    plain = _whole(network, image)
    mirrored_0 = (plain + _whole(network, image.flip(1)).flip(1)) / 2
    logits_0 = sliding_window_logits(network, image, patch, num_classes=2, mirror_axes=(0,))
    assert not torch.allclose(mirrored_0, plain, atol=1e-3)
    torch.testing.assert_close(logits_0, mirrored_0, atol=1e-5, rtol=1e-5)
    # axes 1 and 2 are the image's spatial axes, not the channel axis: the network is equivariant along them
    logits_12 = sliding_window_logits(network, image, patch, num_classes=2, mirror_axes=(1, 2))
    torch.testing.assert_close(logits_12, plain, atol=1e-5, rtol=1e-5)
    subsets = [s for r in range(4) for s in itertools.combinations((1, 2, 3), r)]
    everything = sum(_whole(network, image.flip(s)).flip(s) if s else plain for s in subsets) / len(subsets)
    logits_all = sliding_window_logits(network, image, patch, num_classes=2, mirror_axes=(0, 1, 2))
    torch.testing.assert_close(logits_all, everything, atol=1e-5, rtol=1e-5)


def test_batch_size_does_not_change_the_result():
    network, image = _conv(3, 2, 3, 3), _image(2, 13, 11, 9)
    single = sliding_window_logits(network, image, (8, 8, 8), num_classes=3, mirror_axes=(0, 2))
    for batch_size in (3, 64):
        batched = sliding_window_logits(network, image, (8, 8, 8), num_classes=3, mirror_axes=(0, 2),
                                        batch_size=batch_size)
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_2d_network_predicts_each_slice():
    network, image = _conv(2, 2, 3, 3), _image(2, 5, 13, 9)
    volume = predict_volume_logits(network, image, (8, 8), num_classes=3, mirror_axes=(0, 1), batch_size=4)
    slices = [sliding_window_logits(network, image[:, x], (8, 8), num_classes=3, mirror_axes=(0, 1))
              for x in range(image.shape[1])]
    assert volume.shape == (3, 5, 13, 9)
    torch.testing.assert_close(volume, torch.stack(slices, dim=1), atol=1e-5, rtol=1e-5)


def test_3d_network_predicts_the_volume():
    network, image = _conv(3, 2, 3, 3), _image(2, 9, 10, 11)
    torch.testing.assert_close(predict_volume_logits(network, image, (8, 8, 8), num_classes=3),
                               sliding_window_logits(network, image, (8, 8, 8), num_classes=3))


def test_progress_counts_windows_and_result_is_a_plain_tensor():
    calls = []
    logits = sliding_window_logits(_conv(3, 1, 2, 1), _image(1, 13, 8, 8), (8, 8, 8), num_classes=2,
                                   batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 3), (3, 3)]  # starts [0, 3, 5] along axis 0
    assert not logits.is_inference()
    logits += 1  # callers may accumulate in place (fold ensembles)


def test_errors_name_the_problem():
    network, image = _conv(3, 1, 2, 1), _image(1, 8, 8, 8)
    with pytest.raises(ValueError, match="num_classes=3"):
        sliding_window_logits(network, image, (8, 8, 8), num_classes=3)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_logits(network, image, (8, 8), num_classes=2)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window_logits(network, image, (8, 8, 8), num_classes=2, mirror_axes=(3,))
    with pytest.raises(TypeError, match="deep supervision"):
        sliding_window_logits(lambda x: [network(x)], image, (8, 8, 8), num_classes=2)
