"""Where a training patch comes from: which case, centred where, and whether it must show foreground.

Pure functions of their arguments and a numpy Generator. Lesions are tiny, so a fixed share of the
samples (nnU-Net: a third) is centred on a lesion voxel. Which samples are forced is decided over the
global stream of samples (sample index = batch index * batch size + position in the batch), not per
batch, so the rate is exact for any batch size (nnU-Net's per-batch rounding forces half of a batch of 2).

The k-space slice models see every slice once per epoch instead: the order in epoch e is a pure function
of (seed, e), and rank r of W processes takes every W-th slice of it (the order is cut to a multiple of W,
so every rank takes the same number of steps, which DDP needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

FOREGROUND_RATE = 1 / 3


def _as_fraction(rate: float) -> Fraction:
    """rate as an exact fraction (1/3 stays 1/3), so the forced pattern has no floating-point drift."""
    if not 0 <= rate <= 1:
        raise ValueError(f"foreground rate {rate} must lie in [0, 1]")
    return Fraction(rate).limit_denominator(10_000)


def forced_foreground(sample_index: int, rate: float = FOREGROUND_RATE) -> bool:
    """True when sample `sample_index` of the global stream must be centred on foreground.

    Forced exactly when floor((i + 1) rate) > floor(i rate): any first n samples hold floor(n rate)
    forced ones, spread evenly (rate 1/3: samples 2, 5, 8, ...).
    """
    if sample_index < 0:
        raise ValueError(f"sample index {sample_index} must be >= 0")
    r = _as_fraction(rate)
    return (sample_index + 1) * r.numerator // r.denominator > sample_index * r.numerator // r.denominator


def sample_patch_box(shape: Sequence[int], size: Sequence[int], rng: np.random.Generator,
                     center: Sequence[int] | None = None) -> tuple[int, ...]:
    """Start (one int per axis) of a box of `size` in a case of `shape`: random, or centred on `center`.

    Along each axis the start lies in [min(0, n - k), max(0, n - k)] (n case size, k box size): the box
    lies inside the case when the case is larger, and holds the whole case (zero padding around it) when
    smaller. Random: uniform over that range. Centred: center - k // 2, clipped to that range, so that
    `center` (any voxel of the case) is always inside the box, at index k // 2 unless clipped.
    """
    if not len(shape) == len(size) or (center is not None and len(center) != len(shape)):
        raise ValueError(f"shape {list(shape)}, size {list(size)} and center {center} need one value per axis")
    low = [min(0, n - k) for n, k in zip(shape, size, strict=True)]
    high = [max(0, n - k) for n, k in zip(shape, size, strict=True)]
    if center is None:
        return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high, strict=True))
    return tuple(int(np.clip(c - k // 2, lo, hi)) for c, k, lo, hi in zip(center, size, low, high, strict=True))


def choose_case_and_center(lesions: Sequence[np.ndarray], forced: bool,
                           rng: np.random.Generator) -> tuple[int, tuple[int, ...] | None]:
    """(index of a case, a lesion voxel to centre on or None) for one sample.

    lesions: per case, lesion voxel positions [N, 3] (N may be 0). The case is uniform over all cases.
    A forced sample is centred on a uniformly chosen lesion voxel of it; when that case has none, the
    case is redrawn among those that have lesions; when no case has any, the sample stays random (None).
    """
    if not lesions:
        raise ValueError("no cases to sample from")
    case = int(rng.integers(len(lesions)))
    if not forced:
        return case, None
    if len(lesions[case]) == 0:
        with_lesions = [i for i, positions in enumerate(lesions) if len(positions) > 0]
        if not with_lesions:
            return case, None
        case = with_lesions[int(rng.integers(len(with_lesions)))]
    voxel = lesions[case][int(rng.integers(len(lesions[case])))]
    return case, tuple(int(v) for v in voxel)


def epoch_order(count: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's slice indices for `epoch`: a seeded permutation, cut to a multiple of world_size."""
    if count < world_size:
        raise ValueError(f"{count} slices cannot be shared by {world_size} processes")
    order = np.random.default_rng([seed, epoch]).permutation(count)
    usable = count - count % world_size
    return [int(i) for i in order[:usable][rank::world_size]]
