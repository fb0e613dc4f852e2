"""Sliding-window inference: tile a case with overlapping patches and blend the patches' logits with a Gaussian.

A network trained on patches is most reliable at a patch's centre, where it saw context on every side, so each
window's logits are weighted by a Gaussian centred on the patch (sigma = patch / 8) and the weighted sum is divided
by the summed weights. Mirror test-time augmentation averages each window's logits over every combination of flips
of `mirror_axes` (2^n forward passes per window). A 2D network predicts a volume slice by slice along axis 0.

Axes: an image is [C, *spatial], logits are [K, *spatial]; `mirror_axes` count spatial axes of the patch from 0.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Sequence

import torch

Network = Callable[[torch.Tensor], torch.Tensor]  # [B, C, *patch] -> logits [B, K, *patch]
ProgressFn = Callable[[int, int], None]  # (windows done, windows in all)


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 1 / 8) -> torch.Tensor:
    """Separable Gaussian weights [*patch_size] (float32), centred on the patch, max 1, every voxel > 0.

    sigma = patch * sigma_scale per axis; values that underflow are raised to the smallest positive weight, so
    dividing by summed weights never divides by zero.
    """
    if not patch_size or min(patch_size) < 1:
        raise ValueError(f"patch_size must be positive sizes, got {tuple(patch_size)}")
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
    weight = torch.ones((), dtype=torch.float64)
    for size in patch_size:
        offset = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        weight = weight[..., None] * torch.exp(-0.5 * (offset / (size * sigma_scale)) ** 2)  # outer product
    weight = (weight / weight.max()).float()
    floor = max(float(weight[weight > 0].min()), torch.finfo(torch.float32).tiny)
    return weight.clamp(min=floor)


def window_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """Start indices of windows of length `patch` covering [0, size), consecutive starts at most patch * step apart.

    n = ceil((size - patch) / (patch * step)) + 1 windows, spread evenly from 0 to size - patch (rounded half up);
    repeats, possible only when patch * step < 1 voxel, are dropped.
    """
    if patch < 1 or size < patch:
        raise ValueError(f"need 1 <= patch <= size, got patch {patch}, size {size} (pad the image up to the patch)")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1] (a fraction of the patch), got {step}")
    if size == patch:
        return [0]
    count = math.ceil((size - patch) / (patch * step)) + 1
    stride = (size - patch) / (count - 1)
    return list(dict.fromkeys(math.floor(i * stride + 0.5) for i in range(count)))


def sliding_window_logits(network: Network, image: torch.Tensor, patch_size: Sequence[int], *, num_classes: int,
                          step: float = 0.5, mirror_axes: Sequence[int] = (), batch_size: int = 1,
                          device: torch.device | str = "cpu", progress: ProgressFn | None = None) -> torch.Tensor:
    """Logits [K, *spatial] (float32, CPU) of `network` over the whole image [C, *spatial], window by window.

    The image is zero-padded symmetrically up to the patch where smaller, and the padding is cropped away again.
    `network` must already live on `device`, in eval mode, returning one tensor. `progress(done, total)` is called
    after each batch of windows.
    """
    if image.ndim != len(patch_size) + 1:
        raise ValueError(f"image {tuple(image.shape)} must be [C, *spatial] with {len(patch_size)} spatial axes "
                         f"to match patch_size {tuple(patch_size)}")
    return _tiled_logits(network, image[None], patch_size, num_classes, step, mirror_axes, batch_size, device,
                         progress)[0]


def predict_volume_logits(network: Network, image: torch.Tensor, patch_size: Sequence[int], *, num_classes: int,
                          step: float = 0.5, mirror_axes: Sequence[int] = (), batch_size: int = 1,
                          device: torch.device | str = "cpu", progress: ProgressFn | None = None) -> torch.Tensor:
    """Logits [K, X, Y, Z] (float32, CPU) of a 3D network (3 patch sizes) or a 2D one (2) over image [C, X, Y, Z].

    A 2D network sees the slices image[:, x] ([C, Y, Z]); windows from several slices share a batch, and
    `mirror_axes` then name the slice's axes (0 = Y, 1 = Z).
    """
    if image.ndim != 4:
        raise ValueError(f"image must be [C, X, Y, Z], got shape {tuple(image.shape)}")
    if len(patch_size) == 3:
        return sliding_window_logits(network, image, patch_size, num_classes=num_classes, step=step,
                                     mirror_axes=mirror_axes, batch_size=batch_size, device=device, progress=progress)
    if len(patch_size) != 2:
        raise ValueError(f"patch_size must have 3 (3D network) or 2 (2D network) sizes, got {tuple(patch_size)}")
    slices = image.movedim(1, 0)  # [X, C, Y, Z]: each slice along axis 0 is one image
    logits = _tiled_logits(network, slices, patch_size, num_classes, step, mirror_axes, batch_size, device, progress)
    return logits.movedim(0, 1).contiguous()  # [X, K, Y, Z] -> [K, X, Y, Z]


def padded_windows(images: torch.Tensor, patch_size: Sequence[int],
                   step: float = 0.5) -> tuple[torch.Tensor, list[tuple[slice, ...]]]:
    """Images [N, C, *spatial] zero-padded as sliding-window inference pads them, and its windows over them
    (slices over the spatial axes): for other per-window predictions on the same grid of windows."""
    patch_size = tuple(int(p) for p in patch_size)
    padded, _ = _pad_to(images, patch_size)
    return padded, _tiles(padded.shape[2:], patch_size, step)


def _tiled_logits(network: Network, images: torch.Tensor, patch_size: Sequence[int], num_classes: int, step: float,
                  mirror_axes: Sequence[int], batch_size: int, device: torch.device | str,
                  progress: ProgressFn | None) -> torch.Tensor:
    """Gaussian-blended window logits [N, K, *spatial] for images [N, C, *spatial] that share one spatial shape."""
    patch_size = tuple(int(p) for p in patch_size)
    mirror_axes = _checked_mirror_axes(mirror_axes, len(patch_size))
    if batch_size < 1 or num_classes < 1:
        raise ValueError(f"batch_size and num_classes must be >= 1, got {batch_size} and {num_classes}")
    device = torch.device(device)
    with torch.inference_mode():
        padded, crop = _pad_to(images.to(device, torch.float32), patch_size)
        tiles = _tiles(padded.shape[2:], patch_size, step)
        jobs = [(n, tile) for n in range(len(padded)) for tile in tiles]
        gaussian = gaussian_importance(patch_size).to(device)
        weights = torch.zeros(padded.shape[2:], dtype=torch.float32, device=device)
        for tile in tiles:
            weights[tile] += gaussian
        logits = torch.zeros((len(padded), num_classes, *padded.shape[2:]), dtype=torch.float32, device=device)
        for begin in range(0, len(jobs), batch_size):
            batch = jobs[begin:begin + batch_size]
            windows = torch.stack([padded[(n, slice(None), *tile)] for n, tile in batch])
            predicted = _mirrored(network, windows, mirror_axes, num_classes, device) * gaussian
            for (n, tile), window_logits in zip(batch, predicted, strict=True):
                logits[(n, slice(None), *tile)] += window_logits
            if progress is not None:
                progress(begin + len(batch), len(jobs))
        logits /= weights
        logits = logits[(slice(None), slice(None), *crop)]
    return logits.to("cpu", torch.float32, copy=True)  # copied outside inference mode: a plain tensor for callers


def _mirrored(network: Network, windows: torch.Tensor, mirror_axes: tuple[int, ...], num_classes: int,
              device: torch.device) -> torch.Tensor:
    """Logits [B, K, *patch] averaged over every subset of `mirror_axes` flipped (flip, predict, flip back)."""
    flips = [tuple(axis + 2 for axis in subset)
             for r in range(len(mirror_axes) + 1) for subset in itertools.combinations(mirror_axes, r)]
    total = torch.zeros((len(windows), num_classes, *windows.shape[2:]), dtype=torch.float32, device=device)
    for dims in flips:
        with torch.autocast("cuda") if device.type == "cuda" else contextlib.nullcontext():
            logits = network(torch.flip(windows, dims) if dims else windows)
        _check_logits(logits, windows, num_classes)
        total += torch.flip(logits, dims) if dims else logits
    return total / len(flips)


def _check_logits(logits: object, windows: torch.Tensor, num_classes: int) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the network must return one logits tensor, got {type(logits).__name__} "
                        "(switch deep supervision off for inference)")
    expected = (len(windows), num_classes, *windows.shape[2:])
    if tuple(logits.shape) != expected:
        raise ValueError(f"the network returned logits {tuple(logits.shape)} for windows {tuple(windows.shape)}; "
                         f"expected {expected} (num_classes={num_classes}, output the size of its input)")


def _checked_mirror_axes(mirror_axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    axes = tuple(int(a) for a in mirror_axes)
    if len(set(axes)) != len(axes) or any(not 0 <= a < ndim for a in axes):
        raise ValueError(f"mirror_axes must be distinct spatial axes of the {ndim}D patch (0..{ndim - 1}), "
                         f"got {tuple(mirror_axes)}")
    return axes


def _pad_to(images: torch.Tensor, patch_size: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Images [N, C, *spatial] zero-padded symmetrically to at least the patch, and the slices that undo it."""
    short = [max(p - s, 0) for s, p in zip(images.shape[2:], patch_size, strict=True)]
    before = [m // 2 for m in short]
    pad = [v for b, m in zip(reversed(before), reversed(short), strict=True) for v in (b, m - b)]  # last axis first
    crop = tuple(slice(b, b + s) for b, s in zip(before, images.shape[2:], strict=True))
    return (torch.nn.functional.pad(images, pad) if any(short) else images), crop


def _tiles(spatial: Sequence[int], patch_size: tuple[int, ...], step: float) -> list[tuple[slice, ...]]:
    """Every window of the grid, as slices over the spatial axes."""
    starts = [window_starts(s, p, step) for s, p in zip(spatial, patch_size, strict=True)]
    return [tuple(slice(o, o + p) for o, p in zip(origin, patch_size, strict=True))
            for origin in itertools.product(*starts)]
