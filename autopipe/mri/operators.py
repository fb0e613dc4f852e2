"""Multicoil SENSE encoding: the forward operator A = M F S, its adjoint A^H, and what is built from them.

Shapes, checked on entry (ValueError naming the argument otherwise); `...` are batch dims that broadcast:
    image        x  [..., H, W]     complex (real is accepted)
    maps         S  [..., C, H, W]  complex coil sensitivities, C coils
    kspace       y  [..., C, H, W]  centred k-space (see autopipe.mri.fft), one plane per coil
    coil_images     [..., C, H, W]  complex
    mask         M  [W] (phase-encode lines) or [..., H, W] (2D; [..., 1, W] also works), broadcast onto every coil
The mask must be real (bool, 0/1 or weights) so that M^H = M and `adjoint` is the exact adjoint of `forward`.
numpy arrays and torch tensors are both accepted, not mixed, except that a numpy mask or support is moved
onto the tensors' device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from autopipe.mri.fft import fft2c, ifft2c, is_tensor

if TYPE_CHECKING:
    from autopipe.mri.fft import Array


def forward(image: Array, maps: Array, mask: Array | None = None) -> Array:
    """y_c = M F(S_c x): image [..., H, W] -> k-space [..., C, H, W]; unsampled entries are zero."""
    _check_against_maps(image, maps, "image", coil_axis=False)
    kspace = fft2c(maps * image[..., None, :, :])
    return kspace if mask is None else kspace * _coil_mask(mask, kspace)


def adjoint(kspace: Array, maps: Array, mask: Array | None = None) -> Array:
    """x = sum_c conj(S_c) F^-1(M y_c): k-space [..., C, H, W] -> image [..., H, W]; A^H of `forward`."""
    _check_against_maps(kspace, maps, "kspace", coil_axis=True)
    if mask is not None:
        kspace = kspace * _coil_mask(mask, kspace)
    return sense_combine(ifft2c(kspace), maps)


def sense_combine(coil_images: Array, maps: Array) -> Array:
    """sum_c conj(S_c) x_c: coil images [..., C, H, W] -> image [..., H, W].

    With maps normalized to sum_c |S_c|^2 = 1 (normalize_maps) this is the least-squares image of fully
    sampled data, and it keeps the phase that a root sum of squares throws away.
    """
    _check_against_maps(coil_images, maps, "coil_images", coil_axis=True)
    return (maps.conj() * coil_images).sum(axis=-3)


def rss(coil_images: Array, coil_axis: int = -3) -> Array:
    """Root sum of squares over the coil axis: [..., C, H, W] -> real [..., H, W]; magnitude only."""
    return (abs(coil_images) ** 2).sum(axis=coil_axis) ** 0.5


def normalize_maps(maps: Array, support: Array | None = None, eps: float = 1e-12) -> Array:
    """Scale maps [..., C, H, W] so that sum_c |S_c|^2 = 1 wherever the total exceeds `eps`, zero elsewhere.

    Normalized maps make S^H S the identity on their support, so sense_combine inverts full sampling.
    `support` (bool [..., H, W]) further restricts where the maps are kept (e.g. the head); outside it they
    are zero. `eps` is in units of the map magnitude.
    """
    _check_maps(maps)
    total = rss(maps)
    valid = total > eps
    if support is not None:
        support = _like(support, maps, "support")
        if tuple(support.shape[-2:]) != tuple(maps.shape[-2:]):
            raise ValueError(f"support must be [..., H, W] with H, W = {tuple(maps.shape[-2:])}, "
                             f"got shape {tuple(support.shape)}")
        valid = valid & (support != 0)
    scale = valid / total.clip(min=eps)
    return maps * scale[..., None, :, :]


def data_consistency_gradient(image: Array, kspace: Array, maps: Array, mask: Array | None) -> Array:
    """Gradient of 0.5 ||M F S x - y||^2 in x: sum_c conj(S_c) F^-1(M (M F(S_c x) - y_c)), shape [..., H, W].

    k-space entries outside the mask are ignored (as if zero), so a fully sampled file with a
    retrospective mask gives the same gradient as the zero-filled acquisition.
    """
    return adjoint(forward(image, maps, mask) - kspace, maps, mask)


def _check_maps(maps: Array) -> None:
    if maps.ndim < 3:
        raise ValueError(f"maps must be [..., C, H, W] with the coil axis third from last, got shape "
                         f"{tuple(maps.shape)}")


def _check_against_maps(array: Array, maps: Array, name: str, coil_axis: bool) -> None:
    """Same array kind, matching trailing dims and broadcastable batch dims, else a ValueError saying which."""
    if is_tensor(array) != is_tensor(maps):
        raise TypeError(f"{name} and maps mix a torch tensor and a numpy array; convert one of them")
    _check_maps(maps)
    core = 3 if coil_axis else 2
    layout = "[..., C, H, W]" if coil_axis else "[..., H, W]"
    if array.ndim < core:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(array.shape)}")
    if tuple(array.shape[-core:]) != tuple(maps.shape[-core:]):
        raise ValueError(f"{name} {layout} has trailing dims {tuple(array.shape[-core:])} but maps [..., C, H, W] "
                         f"have {tuple(maps.shape[-core:])}")
    _check_broadcast(array.shape[:-core], maps.shape[:-3], f"batch dims of {name} and maps")


def _coil_mask(mask: Array, kspace: Array) -> Array:
    """The mask as the kind of `kspace`, with a coil axis inserted for a 2D mask so it broadcasts on [..., C, H, W]."""
    mask = _like(mask, kspace, "mask")
    if _is_complex(mask):
        raise ValueError("mask must be real (bool, 0/1 or weights) for forward and adjoint to be adjoint")
    H, W = kspace.shape[-2:]
    if mask.ndim == 0 or mask.shape[-1] != W or (mask.ndim >= 2 and mask.shape[-2] not in (1, H)):
        raise ValueError(f"mask must be [W] or [..., H, W] with H, W = {(H, W)}, got shape {tuple(mask.shape)}")
    real_dtype = kspace.real.dtype  # so that a bool or float64 mask keeps complex64 data complex64
    mask = mask.to(real_dtype) if is_tensor(mask) else mask.astype(real_dtype)
    if mask.ndim == 1:
        return mask
    _check_broadcast(mask.shape[:-2], kspace.shape[:-3], "batch dims of mask and kspace")
    return mask[..., None, :, :]


def _is_complex(array: Array) -> bool:
    return array.dtype.is_complex if is_tensor(array) else np.iscomplexobj(array)


def _like(array: Array, reference: Array, name: str) -> Array:
    """`array` as the kind of `reference`: a numpy array is moved onto the reference tensor's device."""
    if is_tensor(reference) and not is_tensor(array):
        import torch

        return torch.as_tensor(np.asarray(array), device=reference.device)
    if is_tensor(array) and not is_tensor(reference):
        raise TypeError(f"{name} is a torch tensor but the data is a numpy array; convert one of them")
    return array


def _check_broadcast(a: tuple[int, ...], b: tuple[int, ...], what: str) -> None:
    try:
        np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        raise ValueError(f"{what} do not broadcast: {tuple(a)} vs {tuple(b)}") from None
