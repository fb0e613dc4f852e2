"""nnU-Net's training augmentation, built from batchgenerators transforms.

Batch dict: data float32 [B, C, *spatial], seg float32 [B, 1, *spatial] (label values), spatial in network
axis order (2 or 3 axes). The spatial transform rotates and scales about the centre of what it is given
and crops the centre `patch_size` out of it, so the loader reads a larger region (`read_size`) centred
on the patch. batchgenerators draws from numpy's and python's global random state: `seeded_global_random`
makes one application a pure function of a seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
from threadpoolctl import threadpool_limits

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentationSettings:
    """Probabilities (per sample) and ranges of each augmentation; defaults are nnU-Net's."""

    rotation_p: float = 0.2
    rotation_degrees_3d: float = 30.0  # about each axis, uniform in [-d, d]
    rotation_degrees_2d: float = 180.0  # in-plane
    scaling_p: float = 0.2
    scaling: Range = (0.7, 1.4)  # > 1 samples a larger region: zooms out
    elastic: bool = False
    elastic_p: float = 0.2
    elastic_alpha: Range = (0.0, 900.0)
    elastic_sigma: Range = (9.0, 13.0)
    noise_p: float = 0.1
    noise_variance: Range = (0.0, 0.1)
    blur_p: float = 0.2
    blur_p_per_channel: float = 0.5
    blur_sigma: Range = (0.5, 1.0)
    brightness_p: float = 0.15
    brightness: Range = (0.75, 1.25)
    contrast_p: float = 0.15
    contrast: Range = (0.75, 1.25)
    low_resolution_p: float = 0.25
    low_resolution_p_per_channel: float = 0.5
    low_resolution_zoom: Range = (0.5, 1.0)
    gamma_inverted_p: float = 0.1
    gamma_p: float = 0.3
    gamma: Range = (0.7, 1.5)
    mirror: bool = True  # each network axis flipped with probability 1/2
    order_data: int = 3
    order_seg: int = 1  # linear per label, then the most likely label: smoother lesion edges than nearest
    max_read_factor: float = 2.0  # read at most this many times the patch per axis (cost grows with the read)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_p") and not 0 <= value <= 1:
                raise ValueError(f"augmentation setting {name} = {value}: a probability in [0, 1] expected")
            if isinstance(value, tuple) and not (len(value) == 2 and 0 <= value[0] <= value[1]):
                raise ValueError(f"augmentation setting {name} = {value}: a range (low, high), 0 <= low <= high")
        if self.max_read_factor < 1:
            raise ValueError(f"max_read_factor = {self.max_read_factor} must be >= 1")


NNUNET_AUGMENTATION = AugmentationSettings()


def _rotation_matrices(max_radians: float, dim: int) -> np.ndarray:
    """[N, dim, dim] rotations on a grid of angles in [-max, max] per axis (x, then y, then z, as batchgenerators)."""
    steps = max(3, min(25 if dim == 3 else 361, math.ceil(2 * max_radians / math.radians(2.5)) + 1))
    angles = np.linspace(-max_radians, max_radians, steps)
    c, s, zero, one = np.cos(angles), np.sin(angles), np.zeros(steps), np.ones(steps)
    if dim == 2:
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c, -s], -1), np.stack([zero, s, c], -1)], 1)
    ry = np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], 1)
    rz = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], 1)
    return np.einsum("aij,bjk,ckl->abcil", rx, ry, rz).reshape(-1, 3, 3)


def read_size(patch_size: Sequence[int], settings: AugmentationSettings) -> tuple[int, ...]:
    """Size of the region to read so that rotating and scaling it and cropping `patch_size` leaves no empty corner.

    The largest extent of the patch's corners over a grid of the allowed rotations, times the largest scale,
    per axis; at least the patch, at most `max_read_factor` times it, and minus the patch an even number, so
    the patch sits exactly in the middle of the region.
    """
    patch = np.asarray(patch_size, dtype=float)
    if patch.ndim != 1 or len(patch) not in (2, 3) or (patch < 1).any():
        raise ValueError(f"patch size {list(patch_size)}: 2 or 3 positive sizes expected")
    half = (patch - 1) / 2
    corners = np.array(np.meshgrid(*[(-h, h) for h in half], indexing="ij")).reshape(len(patch), -1).T
    extent = half.copy()
    if settings.rotation_p > 0:
        degrees = settings.rotation_degrees_3d if len(patch) == 3 else settings.rotation_degrees_2d
        rotated = corners @ _rotation_matrices(math.radians(min(degrees, 180.0)), len(patch))  # [N, corners, dim]
        extent = np.abs(rotated).max(axis=(0, 1))
    if settings.scaling_p > 0:
        extent = extent * max(1.0, settings.scaling[1])
    size = []
    for k, e in zip(patch_size, extent, strict=True):
        cap = math.floor(settings.max_read_factor * k)
        n = min(max(k, math.ceil(2 * e + 1 - 1e-6)), cap)  # coordinates reach +-e about the centre (n - 1) / 2
        if (n - k) % 2:
            n = n + 1 if n < cap else n - 1
        size.append(int(n))
    return tuple(size)


def training_transforms(patch_size: Sequence[int], settings: AugmentationSettings) -> Compose:
    """nnU-Net's training augmentation for a batch read at `read_size(patch_size, settings)`; crops to `patch_size`.

    Spatial (rotation, scaling, optional elastic deformation) about the region's centre, then noise, blur,
    brightness, contrast, low resolution, gamma (inverted and plain) and mirroring along each network axis.
    """
    dim = len(patch_size)
    degrees = settings.rotation_degrees_3d if dim == 3 else settings.rotation_degrees_2d
    angle = (-math.radians(degrees), math.radians(degrees))
    transforms = [
        SpatialTransform(
            list(patch_size), patch_center_dist_from_border=[k // 2 for k in patch_size],
            do_elastic_deform=settings.elastic, alpha=settings.elastic_alpha, sigma=settings.elastic_sigma,
            p_el_per_sample=settings.elastic_p,
            do_rotation=settings.rotation_p > 0, angle_x=angle, angle_y=angle, angle_z=angle,
            p_rot_per_sample=settings.rotation_p, p_rot_per_axis=1,
            do_scale=settings.scaling_p > 0, scale=settings.scaling, p_scale_per_sample=settings.scaling_p,
            border_mode_data="constant", border_cval_data=0, order_data=settings.order_data,
            border_mode_seg="constant", border_cval_seg=0, order_seg=settings.order_seg, random_crop=False),
        GaussianNoiseTransform(noise_variance=settings.noise_variance, p_per_sample=settings.noise_p),
        GaussianBlurTransform(settings.blur_sigma, different_sigma_per_channel=True, p_per_sample=settings.blur_p,
                              p_per_channel=settings.blur_p_per_channel),
        BrightnessMultiplicativeTransform(multiplier_range=settings.brightness, p_per_sample=settings.brightness_p),
        ContrastAugmentationTransform(contrast_range=settings.contrast, p_per_sample=settings.contrast_p),
        SimulateLowResolutionTransform(zoom_range=settings.low_resolution_zoom, per_channel=True,
                                       p_per_channel=settings.low_resolution_p_per_channel, order_downsample=0,
                                       order_upsample=3, p_per_sample=settings.low_resolution_p),
        GammaTransform(settings.gamma, invert_image=True, per_channel=True, retain_stats=True,
                       p_per_sample=settings.gamma_inverted_p),
        GammaTransform(settings.gamma, invert_image=False, per_channel=True, retain_stats=True,
                       p_per_sample=settings.gamma_p),
    ]
    if settings.mirror:
        transforms.append(MirrorTransform(tuple(range(dim))))
    return Compose(transforms)


@contextmanager
def seeded_global_random(seed: np.random.SeedSequence) -> Iterator[None]:
    """Seed numpy's and python's global random state from `seed` for the block, then restore both."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    numpy_seed, python_seed = seed.generate_state(2)
    np.random.seed(int(numpy_seed))
    random.seed(int(python_seed))
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def augment(data: np.ndarray, seg: np.ndarray, transforms: Compose,
            seed: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """(data [B, C, *patch] float32, seg [B, 1, *patch] uint8) from the read regions, a pure function of `seed`.

    data [B, C, *read], seg [B, 1, *read] (any integer or float dtype holding labels). numpy's BLAS runs on one
    thread meanwhile: batchgenerators rotates coordinates with a skinny matrix product that threads only slow down.
    """
    with seeded_global_random(seed), threadpool_limits(limits=1):
        out = transforms(data=data.astype(np.float32, copy=False), seg=seg.astype(np.float32))
    return out["data"].astype(np.float32, copy=False), np.rint(out["seg"]).astype(np.uint8)
