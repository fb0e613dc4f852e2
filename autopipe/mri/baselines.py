"""Classical reconstructions of undersampled multicoil k-space, the references networks are compared against.

    zero_filled  A^H y: the SENSE-combined image of the acquired samples, no reconstruction at all
    cg_sense     least squares (optionally Tikhonov): conjugate gradient on (A^H A + l2 I) x = A^H y
    l1_wavelet   compressed sensing: FISTA on 0.5 ||A x - y||^2 + weight ||Psi x||_1, Psi orthonormal Haar

A = M F S is the SENSE encoding of autopipe.mri.operators, with its shapes and conventions: k-space
[..., C, H, W], maps [..., C, H, W] (normalized, sum_c |S_c|^2 = 1), mask [W] or [..., H, W] real (None:
fully sampled), image [..., H, W] complex. k-space outside the mask is ignored. Batch dims are independent
problems: every scalar of CG and FISTA (step sizes, stopping) is per sample. torch tensors in give torch
tensors out; numpy arrays are converted and the result is numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from autopipe.mri.fft import is_tensor
from autopipe.mri.haar import haar_forward, haar_inverse, max_levels, padded_size
from autopipe.mri.operators import _coil_mask, adjoint, data_consistency_gradient, forward

if TYPE_CHECKING:
    from autopipe.mri.fft import Array

COARSEST = 8
"""Default coarsest Haar band of l1_wavelet, in pixels along the shorter image axis (see haar.max_levels)."""


def zero_filled(kspace: Array, maps: Array, mask: Array | None) -> Array:
    """The zero-filled SENSE-combined image A^H y, [..., H, W]."""
    kspace, maps, mask, to_numpy = _as_torch(kspace, maps, mask)
    return _output(adjoint(kspace, maps, mask), to_numpy)


def cg_sense(kspace: Array, maps: Array, mask: Array | None, *, iterations: int = 10, l2: float = 0.0,
             tolerance: float = 1e-6) -> Array:
    """CG-SENSE: conjugate gradient on (A^H A + l2 I) x = A^H y from x = 0, image [..., H, W].

    At most `iterations` steps; a sample stops (and stays unchanged) once its residual norm falls below
    `tolerance` * ||A^H y||. Without `l2` and with enough iterations this is the least-squares image;
    a few iterations act as regularization (early stopping).
    """
    _check_nonnegative(iterations=iterations, l2=l2, tolerance=tolerance)
    kspace, maps, mask, to_numpy = _as_torch(kspace, maps, mask)
    b = adjoint(kspace, maps, mask)

    def normal(v: torch.Tensor) -> torch.Tensor:
        out = adjoint(forward(v, maps, mask), maps, mask)
        return out + l2 * v if l2 else out

    x = torch.zeros_like(b)
    r, p = b, b
    rs = _norm2(r)
    threshold = tolerance**2 * _norm2(b)
    active = rs > threshold
    for _ in range(iterations):
        if not active.any():
            break
        Ap = normal(p)
        pAp = _dot(p, Ap)
        alpha = torch.where(active, rs / torch.where(active, pAp, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = _norm2(r)
        beta = torch.where(active, rs_new / torch.where(active, rs, 1.0), 0.0)
        p = torch.where(active, r + beta * p, p)
        rs = torch.where(active, rs_new, rs)
        active = active & (rs_new > threshold)
    return _output(x, to_numpy)


def l1_wavelet(kspace: Array, maps: Array, mask: Array | None, *, weight: float, iterations: int = 50,
               levels: int | None = None) -> Array:
    """Compressed sensing: FISTA on 0.5 ||A x - y||^2 + weight ||Psi x||_1, image [..., H, W].

    Psi is the orthonormal Haar transform with `levels` levels (default: haar.max_levels with a coarsest
    band of COARSEST pixels); every coefficient, the coarsest band included, is complex soft-thresholded
    (magnitudes shrink, phases stay). The image is zero-padded to a multiple of 2**levels and the crop back
    sits inside the data term, so the problem is solved over the padded image and the prox stays exact.
    `weight` is in the units of the image (the pipeline scales data so the zero-filled image's 99th
    percentile is 1). Step 1/L with L = lipschitz_bound(maps, mask), an upper bound of ||A^H A|| (1 for
    normalized maps and a 0/1 mask), so the step never exceeds 1/||A^H A|| as a power-iteration estimate,
    which approaches the norm from below, can. Starts from the zero-filled image.
    """
    _check_nonnegative(weight=weight, iterations=iterations)
    kspace, maps, mask, to_numpy = _as_torch(kspace, maps, mask)
    x0 = adjoint(kspace, maps, mask)
    levels, pad, crop = _padding(x0.shape[-2:], levels)

    def gradient(z: torch.Tensor) -> torch.Tensor:
        return pad(data_consistency_gradient(crop(z), kspace, maps, mask))

    step = 1.0 / lipschitz_bound(maps, mask).to(x0.real.dtype)
    threshold = weight * step
    z = pad(x0)
    v, t = z, 1.0
    for _ in range(iterations):
        z_next = haar_inverse(_soft_threshold(haar_forward(v - step * gradient(v), levels), threshold), levels)
        t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        v = z_next + ((t - 1.0) / t_next) * (z_next - z)
        z, t = z_next, t_next
    return _output(crop(z), to_numpy)


def cs_objective(image: Array, kspace: Array, maps: Array, mask: Array | None, weight: float,
                 levels: int | None = None) -> Array:
    """0.5 ||A x - y||^2 + weight ||Psi x||_1 per sample, real [...], with l1_wavelet's Psi and padding.

    The image [..., H, W] is zero-padded for Psi; for H and W multiples of 2**levels this is exactly what
    l1_wavelet minimizes, otherwise that objective with the padding held at zero (an upper bound of it).
    """
    to_numpy = not is_tensor(image)
    kspace, maps, mask, _ = _as_torch(kspace, maps, mask)
    image = torch.as_tensor(image, device=kspace.device)
    residual = forward(image, maps, mask) - (kspace if mask is None else kspace * _coil_mask(mask != 0, kspace))
    levels, pad, _ = _padding(image.shape[-2:], levels)
    l1 = haar_forward(pad(image), levels).abs().sum(dim=(-2, -1))
    return _output(0.5 * _norm2(residual).sum(dim=-3)[..., 0, 0] + weight * l1, to_numpy)


def _soft_threshold(c: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Complex soft-thresholding: |c| shrinks by `threshold` (clipped at 0), the phase is kept."""
    magnitude = c.abs()
    return c * ((magnitude - threshold).clamp(min=0) / magnitude.clamp(min=torch.finfo(magnitude.dtype).tiny))


def lipschitz_bound(maps: torch.Tensor, mask: Array | None) -> torch.Tensor:
    """An upper bound of ||A^H A|| per sample, [..., 1, 1]: max over pixels of sum_c |S_c|^2 times max |M|^2.

    A = M F S with F unitary: ||A x|| <= max|M| ||S x|| and ||S x||^2 = sum_pixels |x|^2 sum_c |S_c|^2. Equal
    to the norm for a full mask; 1 for maps normalized to sum_c |S_c|^2 = 1 and a 0/1 mask.
    """
    coil_energy = (maps.real**2 + maps.imag**2 if maps.is_complex() else maps**2).sum(dim=-3)
    bound = coil_energy.amax(dim=(-2, -1), keepdim=True)
    if mask is not None:
        weights = torch.as_tensor(mask).to(device=bound.device, dtype=bound.dtype).abs()
        peak = weights.amax(dim=-1, keepdim=True)
        peak = peak.amax(dim=-2, keepdim=True) if weights.ndim >= 2 else peak[..., None]
        bound = bound * peak**2
    return bound.clamp(min=1e-12)


def _padding(shape: tuple[int, int], levels: int | None) -> tuple[int, Callable, Callable]:
    """Levels (default from max_levels), and zero-pad / crop between [..., H, W] and the padded size."""
    H, W = shape
    levels = max_levels((H, W), COARSEST) if levels is None else levels
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    Hp, Wp = padded_size(H, levels), padded_size(W, levels)

    def pad(x: torch.Tensor) -> torch.Tensor:
        if (Hp, Wp) == (H, W):
            return x
        padded = x.new_zeros(x.shape[:-2] + (Hp, Wp))
        padded[..., :H, :W] = x
        return padded

    def crop(x: torch.Tensor) -> torch.Tensor:
        return x[..., :H, :W]

    return levels, pad, crop


def _norm2(x: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm over the last two axes, real [..., 1, 1]."""
    return (x.real**2 + x.imag**2 if x.is_complex() else x**2).sum(dim=(-2, -1), keepdim=True)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample Re <a, b> over the last two axes, real [..., 1, 1]."""
    return (a.conj() * b).real.sum(dim=(-2, -1), keepdim=True) if a.is_complex() or b.is_complex() \
        else (a * b).sum(dim=(-2, -1), keepdim=True)


def _as_torch(kspace: Array, maps: Array, mask: Array | None) -> tuple[torch.Tensor, torch.Tensor, Array | None, bool]:
    """Convert numpy k-space and maps (both numpy) to torch; the flag says whether to hand back numpy."""
    if is_tensor(kspace) or is_tensor(maps):
        return kspace, maps, mask, False  # a numpy/torch mix is for operators to reject
    kspace, maps = torch.as_tensor(np.asarray(kspace)), torch.as_tensor(np.asarray(maps))
    if mask is not None and not is_tensor(mask):
        mask = torch.as_tensor(np.asarray(mask))
    return kspace, maps, mask, True


def _output(x: torch.Tensor, to_numpy: bool) -> Array:
    return x.detach().cpu().numpy() if to_numpy else x


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
