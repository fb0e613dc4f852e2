"""Coil sensitivities from the calibration region by ESPIRiT (Uecker et al., MRM 71:990, 2014), numpy only.

Fully sampled calibration k-space is locally linearly dependent across coils: every kernel_size^2 x C
patch lies in a low-dimensional subspace, the row space of the calibration (Hankel) matrix. Projecting
every patch of the full k-space onto that subspace and averaging is a k-space convolution, hence a
C x C matrix W(x) per pixel in image space; the coil maps at x are its eigenvector of eigenvalue 1.
Where no eigenvalue comes near 1 the data constrain nothing (background) and the maps are zero. Unlike
the calibration-image ratio (autopipe.mri.coils.estimate_maps_calibration) nothing is divided by a
low-resolution image, so the maps stay accurate at edges and in dark parts of the object.
"""

from __future__ import annotations

import numpy as np

from autopipe.mri.fft import ifft2c
from autopipe.mri.masks import calibration_region


def espirit_maps(kspace: np.ndarray, calibration_size: int, *, kernel_size: int | None = None,
                 singular_threshold: float = 0.02, eigen_threshold: float = 0.95) -> np.ndarray:
    """Coil maps, complex64 [..., C, H, W], from centred multicoil k-space [..., C, H, W] (leading dims looped).

    Only the central calibration_size^2 samples are read, so zero-filled undersampled data work as long as
    that square is fully sampled. `singular_threshold` (relative to the largest singular value of the
    calibration matrix) sets the dimension of the patch subspace; a pixel whose top eigenvalue of W(x) is
    below `eigen_threshold` is background. The kernel must leave enough calibration patches to span the
    subspace, else the top eigenvalue stays below the threshold and the maps are all zero: the default
    (None) sizes it with espirit_kernel_size. Maps are normalized to sum_c |S_c|^2 = 1 where kept, zero
    elsewhere; their phase is that
    relative to coil 0 (an eigenvector's phase is arbitrary per pixel), smooth wherever coil 0 sees the pixel.
    """
    kspace = np.asarray(kspace)
    kernel_size = espirit_kernel_size(calibration_size) if kernel_size is None else kernel_size
    _check(kspace, calibration_size, kernel_size, singular_threshold, eigen_threshold)
    planes = kspace.reshape(-1, *kspace.shape[-3:])
    maps = [_one_slice(p, calibration_size, kernel_size, singular_threshold, eigen_threshold) for p in planes]
    return np.stack(maps).reshape(kspace.shape)


def espirit_kernel_size(calibration_size: int) -> int:
    """A kernel width that suits the calibration square: about a third of it, 2 to 6 (6 for the usual 24).

    Wider kernels leave too few patches (rows of the calibration matrix) to span the patch subspace,
    and the maps drop out; measured on simulated 8-coil data, k = calibration_size / 3 keeps every object
    pixel from a calibration size of 6 up, k = calibration_size / 2 loses some.
    """
    return int(np.clip(round(calibration_size / 3), 2, 6)) if calibration_size >= 2 else 1


def calibration_matrix(calibration: np.ndarray, kernel_size: int) -> np.ndarray:
    """Hankel matrix of calibration data [C, n, m]: one row per kernel position, [(n-k+1)(m-k+1), C k^2].

    Row p holds the patch y_c(p + d) for coil c and kernel offset d = (dy, dx), flattened as (c, dy, dx).
    """
    C = calibration.shape[0]
    patches = np.lib.stride_tricks.sliding_window_view(calibration, (kernel_size, kernel_size), axis=(-2, -1))
    return patches.transpose(1, 2, 0, 3, 4).reshape(-1, C * kernel_size**2)


def _one_slice(kspace: np.ndarray, calibration_size: int, kernel_size: int, singular_threshold: float,
               eigen_threshold: float) -> np.ndarray:
    """ESPIRiT maps [C, H, W] of one slice's k-space [C, H, W]."""
    C, H, W = kspace.shape
    k = kernel_size
    calibration = kspace[:, calibration_region((H, W), calibration_size)].astype(np.complex128)
    if not np.any(calibration):
        return np.zeros((C, H, W), np.complex64)
    hankel = calibration_matrix(calibration.reshape(C, calibration_size, calibration_size), k)
    # Right singular vectors via the C k^2 square Gram matrix: cheaper than the SVD of the tall matrix.
    power, vectors = np.linalg.eigh(hankel.conj().T @ hankel)  # ascending; power = singular values^2
    # Rows of A are combinations of the conjugated eigenvectors (A = U S V^H): the patch subspace, [r, C k^2].
    kept = vectors[:, power > singular_threshold**2 * power[-1]].conj().T
    # Projecting every patch onto the subspace and averaging the k^2 estimates of each sample is the
    # convolution y_c -> sum_c' K_cc' * y_c', with K_cc'(e) = sum_{d1 - d2 = e} P[(c, d1), (c', d2)] and
    # P = sum_r v_r v_r^H the projector; in image space W(x)_cc' = sum_e K_cc'(e) exp(2 pi i e.x / N) / k^2.
    projector = (kept.T @ kept.conj()).reshape(C, k, k, C, k, k)
    correlation = np.zeros((C, C, 2 * k - 1, 2 * k - 1), np.complex128)
    offsets = np.arange(k)
    for dy in range(k):
        for dx in range(k):  # projector[:, dy, dx] is [C, C', k, k] over d2, added at e = d1 - d2
            correlation[:, :, k - 1 + dy - offsets[:, None], k - 1 + dx - offsets[None, :]] += projector[:, dy, dx]
    padded = np.zeros((C, C, H, W), np.complex64)
    rows = (H // 2 - (k - 1) + np.arange(2 * k - 1)) % H  # e = 0 at DC; wraps only if 2k - 1 exceeds the matrix
    cols = (W // 2 - (k - 1) + np.arange(2 * k - 1)) % W
    np.add.at(padded, (slice(None), slice(None), rows[:, None], cols[None, :]), correlation.astype(np.complex64))
    gram = ifft2c(padded) * np.float32(np.sqrt(H * W) / k**2)  # ifft2c is orthonormal: undo its 1 / sqrt(HW)
    gram = np.moveaxis(gram.reshape(C, C, H * W), -1, 0)  # [HW, C, C], Hermitian up to round-off
    values, eigenvectors = np.linalg.eigh(gram)  # eigh reads the lower triangle only
    top, maps = values[:, -1], eigenvectors[:, :, -1]  # [HW], [HW, C]: eigenvalue ~1 where there is signal
    reference = maps[:, :1]
    magnitude = np.abs(reference)
    maps = maps * np.where(magnitude > 0, reference.conj() / np.where(magnitude > 0, magnitude, 1), 1)
    maps /= np.maximum(np.linalg.norm(maps, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    maps[top < eigen_threshold] = 0
    return np.ascontiguousarray(maps.T).reshape(C, H, W).astype(np.complex64)


def _check(kspace: np.ndarray, calibration_size: int, kernel_size: int, singular_threshold: float,
           eigen_threshold: float) -> None:
    if kspace.ndim < 3:
        raise ValueError(f"kspace must be [..., C, H, W] (coils, then the matrix), got shape {kspace.shape}")
    if not np.iscomplexobj(kspace):
        raise ValueError(f"kspace must be complex, got dtype {kspace.dtype}")
    H, W = kspace.shape[-2:]
    if not 1 <= calibration_size <= min(H, W):
        raise ValueError(f"calibration_size {calibration_size} does not fit the {H}x{W} k-space matrix")
    if not 1 <= kernel_size <= calibration_size:
        raise ValueError(f"kernel_size {kernel_size} must be from 1 to calibration_size {calibration_size}")
    if not 0 <= singular_threshold < 1:
        raise ValueError(f"singular_threshold must be in [0, 1), got {singular_threshold}")
    if not 0 <= eigen_threshold <= 1:
        raise ValueError(f"eigen_threshold must be in [0, 1], got {eigen_threshold}")
