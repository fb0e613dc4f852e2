"""The plain U-Net's shape as the planner sees it: pooling topology, memory proxy and training FLOPs.

Pure functions over sizes; no torch. Sizes are in network axis order (after `transpose_forward`),
2 or 3 axes. The U-Net is nnU-Net's PlainConvUNet: per stage `n_conv` convolutions (the first one
strided), features doubling from `base_features` up to a cap, transposed convolutions up, and a
1x1 segmentation head (one per decoder stage with deep supervision).

Written from nnU-Net v2's documented planning rules (see shared/reference/nnunet-planning.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_FEATURE_MAP_SIZE = 4  # nnU-Net: no axis is pooled below 4 voxels at the bottleneck
BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}  # nnU-Net's caps at base 32, scaled with the base features
N_CONV_PER_STAGE = 2


@dataclass(frozen=True)
class Topology:
    """Pooling and convolution kernels for one patch size.

    `strides[0]` is all ones (the first stage does not pool); `kernel_sizes` has one entry per stage,
    the last being the bottleneck's 3x3(x3). `patch_size` is the input padded up to `divisible_by`.
    """

    num_pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]
    divisible_by: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


@dataclass(frozen=True)
class UNetPlan:
    """A planned U-Net: topology (with the padded patch size), features per stage, batch size."""

    topology: Topology
    features: tuple[int, ...]
    batch_size: int

    @property
    def patch_size(self) -> tuple[int, ...]:
        return self.topology.patch_size


def get_pool_and_conv_props(spacing: tuple[float, ...] | list[float], patch_size: tuple[float, ...] | list[float],
                            min_feature_map_size: int = MIN_FEATURE_MAP_SIZE,
                            max_numpool: int = 999999) -> Topology:
    """nnU-Net v2's pooling rule: pool the axes that are large enough and within 2x of the finest spacing.

    Per stage: an axis may pool while its size is >= 2 * min_feature_map_size and its spacing is
    less than twice the finest spacing among such axes; a lone poolable axis needs size >= 3 *
    min_feature_map_size. The kernel along an axis becomes 3 (for good) once its spacing is within
    2x of the finest, else stays 1. The patch is padded to a multiple of 2**(pools per axis).
    """
    dim = len(spacing)
    spacing_now = [float(s) for s in spacing]
    size_now = [float(s) for s in patch_size]  # a median shape may be fractional; padding makes it whole
    pools = [0] * dim
    kernel = [1] * dim
    strides: list[tuple[int, ...]] = [(1,) * dim]
    kernels: list[tuple[int, ...]] = []
    while True:
        large_enough = [d for d in range(dim) if size_now[d] >= 2 * min_feature_map_size]
        if not large_enough:
            break
        finest = min(spacing_now[d] for d in large_enough)
        axes = [d for d in large_enough if spacing_now[d] / finest < 2 and pools[d] < max_numpool]
        if not axes or (len(axes) == 1 and size_now[axes[0]] < 3 * min_feature_map_size):
            break
        finest_all = min(spacing_now)
        kernel = [3 if k == 3 or spacing_now[d] / finest_all < 2 else 1 for d, k in enumerate(kernel)]
        for d in axes:
            pools[d] += 1
            spacing_now[d] *= 2
            size_now[d] = math.ceil(size_now[d] / 2)
        strides.append(tuple(2 if d in axes else 1 for d in range(dim)))
        kernels.append(tuple(kernel))
    kernels.append((3,) * dim)
    divisible_by = tuple(2**p for p in pools)
    padded = tuple(int(math.ceil(float(s) / m)) * m for s, m in zip(patch_size, divisible_by, strict=True))
    return Topology(tuple(pools), tuple(strides), tuple(kernels), padded, divisible_by)


def features_per_stage(n_stages: int, dim: int, base_features: int = BASE_FEATURES) -> tuple[int, ...]:
    """Features doubling per stage from `base_features`, capped at nnU-Net's cap scaled by base/32."""
    cap = MAX_FEATURES[dim] * base_features // BASE_FEATURES
    return tuple(min(cap, base_features * 2**i) for i in range(n_stages))


def _stage_sizes(patch_size: tuple[int, ...], strides: tuple[tuple[int, ...], ...]) -> list[tuple[int, ...]]:
    """Feature-map size at the output of every encoder stage (floor division, like the network)."""
    sizes, size = [], tuple(patch_size)
    for stride in strides:
        size = tuple(s // k for s, k in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def feature_map_size(patch_size: tuple[int, ...], strides: tuple[tuple[int, ...], ...], features: tuple[int, ...],
                     num_classes: int, n_conv: int = N_CONV_PER_STAGE) -> int:
    """nnU-Net's memory proxy for one sample: sum of channels x voxels over every conv output.

    Encoder: `n_conv` convs per stage at that stage's size. Decoder (one stage per skip): `n_conv`
    convs plus the transposed conv, at the skip's size with the skip's channels; the segmentation
    head only at full resolution (the estimate leaves deep supervision out).
    """
    sizes = _stage_sizes(patch_size, strides)
    total = sum(n_conv * f * math.prod(s) for f, s in zip(features, sizes, strict=True))
    for f, s in zip(features[:-1], sizes[:-1], strict=True):
        total += (n_conv + 1) * f * math.prod(s)
    return int(total + num_classes * math.prod(sizes[0]))


def training_flops(patch_size: tuple[int, ...], topology: Topology, features: tuple[int, ...], in_channels: int,
                   num_classes: int, batch_size: int, n_conv: int = N_CONV_PER_STAGE,
                   deep_supervision: bool = True) -> float:
    """Convolution FLOPs of one training step (forward + backward, backward = 2x forward).

    One multiply-add = 2 FLOPs. Counted: every conv (k^d x C_in x C_out per output voxel), the
    transposed convs (stride-sized kernels) and the 1x1 heads; norms and nonlinearities are left
    to the measured throughput, which includes them.
    """
    sizes = _stage_sizes(patch_size, topology.strides)
    macs = 0.0
    c_in = in_channels
    for f, size, kernel in zip(features, sizes, topology.kernel_sizes, strict=True):
        voxels = math.prod(size)
        macs += voxels * f * c_in * math.prod(kernel) + (n_conv - 1) * voxels * f * f * math.prod(kernel)
        c_in = f
    heads = range(len(features) - 1) if deep_supervision else range(1)
    for s in range(len(features) - 1):
        voxels, f, kernel = math.prod(sizes[s]), features[s], math.prod(topology.kernel_sizes[s])
        macs += voxels * features[s + 1] * f  # transposed conv, kernel = stride: one MAC per input-output pair
        macs += voxels * f * 2 * f * kernel + (n_conv - 1) * voxels * f * f * kernel
        if s in heads:
            macs += voxels * f * num_classes
    return 2.0 * 3.0 * macs * batch_size


def shrink_patch(spacing: tuple[float, ...], topology: Topology, median_shape: tuple[float, ...],
                 floor: tuple[int, ...] | None = None) -> Topology | None:
    """nnU-Net's patch reduction step; None when no axis may shrink (every axis at `floor`).

    The axis largest relative to the median shape loses one divisibility step, where the step is
    recomputed for the reduced patch (so sizes like 224 between 256 and 192 are not skipped). With a
    `floor`, axes that would drop below it are passed over in favour of the next largest.
    """
    patch = list(topology.patch_size)
    # largest ratio first; on ties the later axis, as numpy's argsort(...)[-1] in nnU-Net picks it
    order = sorted(range(len(patch)), key=lambda d: (patch[d] / median_shape[d], d), reverse=True)
    for axis in order:
        trial = list(patch)
        trial[axis] -= topology.divisible_by[axis]
        if trial[axis] < 1:
            continue
        step = get_pool_and_conv_props(spacing, trial).divisible_by[axis]
        reduced = list(patch)
        reduced[axis] -= step
        if reduced[axis] >= 1 and (floor is None or reduced[axis] >= floor[axis]):
            return get_pool_and_conv_props(spacing, reduced)
        if floor is None:
            return None
    return None
