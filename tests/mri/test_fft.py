"""The centred orthonormal FFT: numpy's transform with explicit shifts, the same on torch, unitary."""

import numpy as np
import pytest
import torch

from autopipe.mri.fft import fft2c, ifft2c

SHAPES = [(8, 8), (7, 10), (2, 3, 9, 6)]  # even, odd and batched


def _random(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_matches_shifted_fft(shape):
    x = _random(shape)
    axes = (-2, -1)
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)
    np.testing.assert_allclose(fft2c(x), expected, atol=1e-12)
    expected_inverse = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)
    np.testing.assert_allclose(ifft2c(x), expected_inverse, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 8), (7, 10)])
def test_dc_and_origin_sit_at_the_centre_index(shape):
    H, W = shape
    constant = np.ones(shape)
    expected = np.zeros(shape, complex)
    expected[H // 2, W // 2] = np.sqrt(H * W)
    np.testing.assert_allclose(fft2c(constant), expected, atol=1e-12)
    delta = np.zeros(shape)
    delta[H // 2, W // 2] = 1.0  # the image origin: flat k-space with zero phase
    np.testing.assert_allclose(fft2c(delta), np.full(shape, 1 / np.sqrt(H * W)), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_torch_matches_numpy(shape, dtype):
    x = _random(shape)
    tensor = torch.as_tensor(x).to(dtype)
    tolerance = 1e-5 if dtype == torch.complex64 else 1e-12
    for transform in (fft2c, ifft2c):
        result = transform(tensor)
        assert isinstance(result, torch.Tensor) and result.dtype == dtype
        np.testing.assert_allclose(result.numpy(), transform(x), atol=tolerance)


def test_real_input_gives_complex_of_matching_precision():
    assert fft2c(np.ones((4, 4), np.float32)).dtype == np.complex64
    assert fft2c(torch.ones(4, 4)).dtype == torch.complex64
    assert fft2c(np.ones((4, 4), np.complex64)).dtype == np.complex64


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_and_parseval(shape):
    x = _random(shape)
    np.testing.assert_allclose(ifft2c(fft2c(x)), x, atol=1e-12)
    np.testing.assert_allclose(fft2c(ifft2c(x)), x, atol=1e-12)
    assert np.linalg.norm(fft2c(x)) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    tensor = torch.as_tensor(x)
    torch.testing.assert_close(ifft2c(fft2c(tensor)), tensor)
    assert torch.linalg.vector_norm(fft2c(tensor)).item() == pytest.approx(np.linalg.norm(x), rel=1e-12)


def test_rejects_fewer_than_two_dims():
    with pytest.raises(ValueError, match="at least 2 dims"):
        fft2c(np.ones(5))
