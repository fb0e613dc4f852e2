"""Orthonormal multilevel 2D Haar wavelet over the last two axes of a torch tensor (complex or real).

The sparsifying transform Psi of the l1-wavelet compressed-sensing baseline: orthonormal, so
||Psi x|| = ||x||, the inverse is the adjoint and the proximal operator of ||Psi x||_1 is exact
(soft-threshold the coefficients). One level maps each 2x2 block [[a, b], [c, d]] to
(a+b+c+d)/2 (low-low), (a-b+c-d)/2 (W detail), (a+b-c-d)/2 (H detail), (a-b-c+d)/2 (diagonal), stored
in place: low-low in the top-left quadrant, W detail top-right, H detail bottom-left, diagonal
bottom-right. Further levels recurse into the top-left quadrant. H and W must be divisible by 2**levels;
`padded_size` gives the zero-padded size that makes them so.
"""

from __future__ import annotations

import math

import torch

_SQRT_HALF = math.sqrt(0.5)


def haar_forward(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Image [..., H, W] -> Haar coefficients [..., H, W] in the in-place quadrant layout."""
    _check(x, levels)
    coefficients = x.clone()
    H, W = x.shape[-2:]
    for level in range(levels):
        h, w = H >> level, W >> level
        block = _analysis(_analysis(coefficients[..., :h, :w], dim=-2), dim=-1)
        coefficients[..., :h, :w] = block
    return coefficients


def haar_inverse(c: torch.Tensor, levels: int) -> torch.Tensor:
    """Haar coefficients [..., H, W] -> image [..., H, W]; the exact inverse (and adjoint) of haar_forward."""
    _check(c, levels)
    image = c.clone()
    H, W = c.shape[-2:]
    for level in reversed(range(levels)):
        h, w = H >> level, W >> level
        block = _synthesis(_synthesis(image[..., :h, :w], dim=-1), dim=-2)
        image[..., :h, :w] = block
    return image


def max_levels(shape: tuple[int, int], coarsest: int = 8) -> int:
    """The most levels whose coarsest band, after zero-padding to padded_size, keeps >= `coarsest` pixels on the
    shorter axis; 0 when the image is smaller than `coarsest`."""
    if coarsest < 1:
        raise ValueError(f"coarsest must be >= 1, got {coarsest}")
    n = min(shape)
    levels = 0
    while -(-n // 2 ** (levels + 1)) >= coarsest:
        levels += 1
    return levels


def padded_size(n: int, levels: int) -> int:
    """The smallest size >= n divisible by 2**levels."""
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    step = 2**levels
    return -(-n // step) * step


def _analysis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One level along `dim`: pairs (even, odd) -> [(even+odd)/sqrt2 ..., (even-odd)/sqrt2 ...]."""
    even, odd = _pairs(x, dim)
    return torch.cat([(even + odd) * _SQRT_HALF, (even - odd) * _SQRT_HALF], dim=dim)


def _synthesis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of _analysis: [low ..., high ...] -> interleaved (low+high)/sqrt2, (low-high)/sqrt2."""
    low, high = x.chunk(2, dim=dim)
    return _interleave((low + high) * _SQRT_HALF, (low - high) * _SQRT_HALF, dim)


def _interleave(even: torch.Tensor, odd: torch.Tensor, dim: int) -> torch.Tensor:
    """even[0], odd[0], even[1], odd[1], ... along `dim`."""
    dim = dim % even.ndim
    shape = list(even.shape)
    shape[dim] *= 2
    return torch.stack([even, odd], dim=dim + 1).reshape(shape)


def _pairs(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    if dim == -2:
        return x[..., 0::2, :], x[..., 1::2, :]
    return x[..., 0::2], x[..., 1::2]


def _check(x: torch.Tensor, levels: int) -> None:
    if x.ndim < 2:
        raise ValueError(f"the Haar transform needs [..., H, W], got shape {tuple(x.shape)}")
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    H, W = x.shape[-2:]
    if H % 2**levels or W % 2**levels:
        raise ValueError(f"H and W must be divisible by 2**levels = {2**levels} for {levels} Haar levels, got "
                         f"{H}x{W}; zero-pad to padded_size first")
