"""Centred, orthonormal 2D Fourier transform between image space and k-space, over the last two axes.

Centred: k-space DC sits at index (H//2, W//2), the convention of every autopipe k-space file, and the
image origin sits at the same index of image space (ifftshift -> fft2 -> fftshift). Orthonormal
(norm='ortho'): the transform is unitary, so noise levels and norms carry over between the two spaces
and the adjoint is the inverse. numpy arrays and torch tensors are both accepted; the result is of the
same kind, complex, on the same device.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor

_AXES = (-2, -1)


def is_tensor(x: object) -> bool:
    """True for a torch tensor. Never imports torch: numpy-only callers do not pay its import time."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def fft2c(x: Array) -> Array:
    """Image [..., H, W] -> centred k-space [..., H, W], complex (complex64 for float32/complex64 input)."""
    return _centred(x, inverse=False)


def ifft2c(x: Array) -> Array:
    """Centred k-space [..., H, W] -> image [..., H, W], complex; the exact inverse (and adjoint) of fft2c."""
    return _centred(x, inverse=True)


def _centred(x: Array, inverse: bool) -> Array:
    """ifftshift -> (i)fft2 with norm='ortho' -> fftshift over the last two axes, numpy or torch."""
    _check_2d(x)
    if is_tensor(x):
        import torch

        transform = torch.fft.ifft2 if inverse else torch.fft.fft2
        return torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=_AXES), dim=_AXES, norm="ortho"), dim=_AXES)
    transform = np.fft.ifft2 if inverse else np.fft.fft2
    return np.fft.fftshift(transform(np.fft.ifftshift(x, axes=_AXES), axes=_AXES, norm="ortho"), axes=_AXES)


def _check_2d(x: Array) -> None:
    if x.ndim < 2:
        raise ValueError(f"the 2D FFT needs an array of at least 2 dims [..., H, W], got shape {tuple(x.shape)}")
