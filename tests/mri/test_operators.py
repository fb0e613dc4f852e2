"""SENSE operators: adjointness, normalization, exact recovery, gradient, and the shape checks."""

import numpy as np
import pytest
import torch

from autopipe.mri.fft import fft2c, ifft2c
from autopipe.mri.operators import adjoint, data_consistency_gradient, forward, normalize_maps, rss, sense_combine

B, C, H, W = 2, 4, 11, 10


def _complex(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _masks():
    rng = np.random.default_rng(7)
    return {
        "none": None,
        "lines": rng.random(W) < 0.5,
        "2d": rng.random((H, W)) < 0.4,
        "batched_2d": rng.random((B, H, W)) < 0.4,
        "weights": rng.random((1, W)),
    }


def _as(backend, array):
    if backend == "torch" and array is not None:
        return torch.as_tensor(array)
    return array


def _vdot(a, b):
    if isinstance(a, torch.Tensor):
        return torch.vdot(a.flatten(), b.flatten()).item()
    return np.vdot(a, b)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("mask_name", list(_masks()))
def test_adjoint_is_the_adjoint_of_forward(backend, mask_name):
    x = _as(backend, _complex((B, H, W), 0))
    y = _as(backend, _complex((B, C, H, W), 1))
    maps = _as(backend, _complex((B, C, H, W), 2))
    mask = _as(backend, _masks()[mask_name])
    lhs = _vdot(forward(x, maps, mask), y)
    rhs = _vdot(x, adjoint(y, maps, mask))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_forward_applies_the_mask_to_every_coil():
    x, maps = _complex((H, W), 0), _complex((C, H, W), 1)
    lines = np.zeros(W, bool)
    lines[[1, 5]] = True
    y = forward(x, maps, lines)
    assert y.shape == (C, H, W)
    assert np.all(y[..., ~lines] == 0) and np.all(y[..., lines] != 0)
    np.testing.assert_allclose(y[..., lines], fft2c(maps * x)[..., lines])


def test_masks_keep_single_precision():
    x, maps = _complex((H, W), 0).astype(np.complex64), _complex((C, H, W), 1).astype(np.complex64)
    for mask in (_masks()["lines"], _masks()["weights"], np.ones((H, W), np.uint8)):
        assert forward(x, maps, mask).dtype == np.complex64
        assert adjoint(forward(x, maps), maps, mask).dtype == np.complex64
    assert forward(torch.as_tensor(x), torch.as_tensor(maps), _masks()["weights"]).dtype == torch.complex64


def test_numpy_mask_on_torch_data():
    x, maps = torch.as_tensor(_complex((H, W), 0)), torch.as_tensor(_complex((C, H, W), 1))
    mask = np.random.default_rng(0).random((H, W)) < 0.5
    torch.testing.assert_close(forward(x, maps, mask), forward(x, maps, torch.as_tensor(mask)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_normalize_maps_gives_unit_total_on_support(backend):
    maps = _complex((B, C, H, W), 3)
    maps[:, :, 0, 0] = 0  # no coil sees this pixel: stays zero
    support = np.ones((B, H, W), bool)
    support[:, :, -2:] = False
    normalized = normalize_maps(_as(backend, maps), support=_as(backend, support))
    total = np.asarray(rss(normalized)) ** 2
    inside = support.copy()
    inside[:, 0, 0] = False
    np.testing.assert_allclose(total[inside], 1.0, rtol=1e-12)
    assert np.all(total[~inside] == 0)
    unrestricted = np.asarray(rss(normalize_maps(_as(backend, maps)))) ** 2
    np.testing.assert_allclose(unrestricted[:, 1:, :], 1.0, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_sense_combine_recovers_the_image_from_full_sampling(backend):
    x = _as(backend, _complex((B, H, W), 4))
    maps = normalize_maps(_as(backend, _complex((C, H, W), 5)))
    coil_images = ifft2c(forward(x, maps))
    recovered = sense_combine(coil_images, maps)
    np.testing.assert_allclose(np.asarray(recovered), np.asarray(x), atol=1e-12)
    np.testing.assert_allclose(np.asarray(adjoint(forward(x, maps), maps)), np.asarray(x), atol=1e-12)


def test_rss_is_the_magnitude_over_coils():
    coil_images = np.zeros((3, 2, 2), complex)
    coil_images[:, 0, 0] = [3, 4j, 0]
    np.testing.assert_allclose(rss(coil_images), [[5, 0], [0, 0]])
    np.testing.assert_allclose(rss(coil_images.transpose(1, 2, 0), coil_axis=-1), [[5, 0], [0, 0]])


def test_data_consistency_gradient_matches_autograd():
    x = torch.as_tensor(_complex((B, H, W), 6)).requires_grad_()
    maps, y = torch.as_tensor(_complex((C, H, W), 7)), torch.as_tensor(_complex((B, C, H, W), 8))
    mask = torch.as_tensor(_masks()["lines"])
    loss = 0.5 * (forward(x, maps, mask) - y).abs().pow(2).sum()
    loss.backward()
    gradient = data_consistency_gradient(x.detach(), y, maps, mask)
    torch.testing.assert_close(gradient, x.grad)  # torch's complex gradient is A^H (A x - y)


def test_data_consistency_gradient_vanishes_at_the_truth_and_ignores_unsampled_kspace():
    x, maps = _complex((H, W), 9), _complex((C, H, W), 10)
    mask = _masks()["2d"]
    full = forward(x, maps)
    np.testing.assert_allclose(data_consistency_gradient(x, full, maps, mask), 0, atol=1e-12)
    assert np.abs(data_consistency_gradient(x, full * 1.1, maps, mask)).max() > 1e-3


def test_shape_errors_name_the_argument():
    x, maps = _complex((H, W), 0), _complex((C, H, W), 1)
    with pytest.raises(ValueError, match="maps must be"):
        forward(x, maps[0])
    with pytest.raises(ValueError, match="image"):
        forward(x[:, :-1], maps)
    with pytest.raises(ValueError, match="kspace"):
        adjoint(np.ones((C + 1, H, W)), maps)
    with pytest.raises(ValueError, match="mask"):
        forward(x, maps, np.ones(W + 1, bool))
    with pytest.raises(ValueError, match="batch dims"):
        forward(_complex((3, H, W), 2), _complex((2, C, H, W), 3))
    with pytest.raises(ValueError, match="real"):
        forward(x, maps, np.ones(W, complex))
    with pytest.raises(TypeError, match="torch"):
        forward(torch.as_tensor(x), maps)
