"""The joint model: the plain U-Net whose whole-brain lesion map feeds a hand-function head.

L_joint = L_seg + r L_cls. L_seg is the U-Net's loss on patches, as always. For L_cls a subject's whole
preprocessed volume goes through the same U-Net, cut into non-overlapping patch-sized tiles (the network only
ever sees patches of the size it was planned for, so its instance normalisation sees what it saw in training),
the lesion probabilities are put back on the full template grid, and autopipe.models.lesion_map_head turns them
into one logit. The head thus sees the whole brain and where the lesions lie, and the hand-function loss reaches
the segmentation. forward(x) is PlainConvUNet's, so sliding-window inference, validation and checkpoints of the
segmentation part work unchanged; forward(x, brains) (the form DistributedDataParallel wraps) adds the logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from autopipe.models.lesion_map_head import LesionMapHead
from autopipe.models.unet import PlainConvUNet
from autopipe.plan.configs import SegmentationConfig


@dataclass(frozen=True)
class Brain:
    """A preprocessed case whole: its image [C, x, y, z] on its cropped grid, and that crop's box on the full
    template grid (((lo, hi),) * 3, as CaseProperties.crop_box)."""

    image: torch.Tensor
    crop_box: tuple[tuple[int, int], ...]


def tile(images: torch.Tensor, patch_size: Sequence[int]) -> torch.Tensor:
    """Images [N, C, *spatial] zero-padded at the end to whole patches and cut into them: [N * tiles, C, *patch],
    tiles in C order per image."""
    patch = tuple(int(p) for p in patch_size)
    dim = len(patch)
    if images.ndim != dim + 2:
        raise ValueError(f"images [N, C, {dim} spatial axes] expected, got {list(images.shape)}")
    counts = [-(-s // p) for s, p in zip(images.shape[2:], patch, strict=True)]
    pads = [v for s, p, n in zip(reversed(images.shape[2:]), reversed(patch), reversed(counts), strict=True)
            for v in (0, n * p - s)]
    padded = nn.functional.pad(images, pads)
    n, c = images.shape[:2]
    split = padded.reshape(n, c, *(v for pair in zip(counts, patch, strict=True) for v in pair))
    order = [0, *(2 + 2 * i for i in range(dim)), 1, *(3 + 2 * i for i in range(dim))]
    return split.permute(order).reshape(n * math.prod(counts), c, *patch)


def untile(tiles: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """tile's inverse for per-voxel values: tiles [N * tiles, *patch] -> [N, *shape], the padding dropped."""
    patch = tuple(tiles.shape[1:])
    dim = len(patch)
    if len(shape) != dim:
        raise ValueError(f"a {dim}-axis shape expected, got {list(shape)}")
    counts = [-(-int(s) // p) for s, p in zip(shape, patch, strict=True)]
    n = tiles.shape[0] // math.prod(counts)
    if n * math.prod(counts) != tiles.shape[0]:
        raise ValueError(f"{tiles.shape[0]} tiles do not cover whole images of shape {list(shape)}")
    grid = tiles.reshape(n, *counts, *patch)
    order = [0, *(v for i in range(dim) for v in (1 + i, 1 + dim + i))]
    whole = grid.permute(order).reshape(n, *(c * p for c, p in zip(counts, patch, strict=True)))
    return whole[(slice(None), *(slice(0, int(s)) for s in shape))]


class JointUNet(PlainConvUNet):
    """PlainConvUNet (same positional arguments and forward) plus a LesionMapHead.

    `hand_head` is the head's geometry (LesionMapHead's arguments), `patch_size` the planned patch (the tiles'),
    `transpose_forward` the plan's axis order of the network's input.
    """

    def __init__(self, *args, hand_head: dict, patch_size: Sequence[int], transpose_forward: Sequence[int],
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.transpose_forward = tuple(int(a) for a in transpose_forward)
        if len(self.patch_size) != self.dim or sorted(self.transpose_forward) != [0, 1, 2]:
            raise ValueError(f"patch {self.patch_size} and axis order {self.transpose_forward} do not fit a "
                             f"{self.dim}D U-Net on 3D volumes")
        self.hand_head = LesionMapHead(**hand_head)  # built last: the U-Net's init is PlainConvUNet's

    def forward(self, x: torch.Tensor, brains: Sequence[Brain] | None = None):
        """PlainConvUNet's outputs; with `brains`, (those outputs, one hand-function logit per brain)."""
        outputs = super().forward(x)
        return outputs if brains is None else (outputs, self.brain_logits(brains))

    def brain_logits(self, brains: Sequence[Brain]) -> torch.Tensor:
        """Hand-function logits [len(brains)]; with no brain an empty tensor that still depends on the head (so
        DistributedDataParallel sees a gradient for every parameter)."""
        head = self.hand_head
        if not brains:
            return torch.zeros(0, device=head.bias.device) * (head.bias + head.weight.sum())
        return head(torch.stack([self.lesion_probability(brain) for brain in brains]))

    def lesion_probability(self, brain: Brain) -> torch.Tensor:
        """P(any lesion class) [*fine_shape] of a whole brain on the full template grid, 0 outside its crop."""
        image = brain.image
        if image.ndim != 4 or image.shape[0] != self.in_channels:
            raise ValueError(f"brain image [{self.in_channels}, x, y, z] expected, got {list(image.shape)}")
        order = self.transpose_forward
        volume = image.permute(0, *(a + 1 for a in order))
        images = volume[None] if self.dim == 3 else volume.movedim(1, 0)  # 2d: the slices along axis 0
        outputs = super().forward(tile(images, self.patch_size))
        logits = outputs[0] if isinstance(outputs, list | tuple) else outputs
        lesion = 1 - torch.softmax(logits.float(), dim=1)[:, 0]
        probability = untile(lesion, images.shape[2:])
        probability = probability[0] if self.dim == 3 else probability
        probability = probability.permute(*sorted(range(3), key=lambda a: order[a]))
        full = self.hand_head.fine_shape
        box = [(int(lo), int(hi)) for lo, hi in brain.crop_box]
        if [hi - lo for lo, hi in box] != list(probability.shape) or any(
                lo < 0 or hi > n for (lo, hi), n in zip(box, full, strict=True)):
            raise ValueError(f"a brain of shape {list(probability.shape)} does not fit crop box {box} of the full "
                             f"grid {list(full)}")
        pads = [v for (lo, hi), n in zip(reversed(box), reversed(full), strict=True) for v in (lo, n - hi)]
        return nn.functional.pad(probability, pads)


def build_joint_network(config: SegmentationConfig, in_channels: int, num_classes: int, hand_head: dict,
                        transpose_forward: Sequence[int]) -> JointUNet:
    """The joint model on the U-Net a plan's configuration describes, with the head's geometry `hand_head`."""
    if config.network != "PlainConvUNet":
        raise ValueError(f"network {config.network!r} in the plan: the joint model extends PlainConvUNet only")
    return JointUNet(in_channels, num_classes, config.features_per_stage, config.kernel_sizes, config.strides,
                     config.n_conv_per_stage, config.deep_supervision, hand_head=hand_head,
                     patch_size=config.patch_size, transpose_forward=transpose_forward)
