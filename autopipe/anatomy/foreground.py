"""The object in a scan (a head, a stripped brain, a crop of tissue), whatever the background holds.

Scanners and converters write the air around a head as exact zeros, as noise, or as a constant; a
stripped brain has the same variety; and skull, scalp or CSF can be darker than the brain in some
contrasts (FLAIR). So the object is every voxel clearly above the background level: the scan edge's
median plus three times its spread (its 90th percentile above the median) plus 2% of the image's 99th
percentile, but never above half the Otsu threshold of the positive voxels (in a crop, tissue reaches
the edge, which then says nothing about the background). On a zero background that is the non-zero
region; on noise, about 3.6 noise levels; on a constant, just above it. Holes are filled in 3D and
slice by slice along each axis (a bright scalp encloses skull and brain in every slice, even where the
scan's edge cuts the head open), and the 6-connected components of at least a tenth of the largest
are kept (a scalp that a dark skull separates from the brain stays in; noise specks do not). The edge
only sets the level: it decides nothing about stripping.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.cohort.image_io import bounding_box, spacing_of

OTSU_BINS = 256
EDGE_SPREADS = 3.0
FRACTION_OF_BRIGHT = 0.02
MIN_COMPONENT_OF_LARGEST = 0.1


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold maximizing the between-class variance of a 256-bin histogram (the middle of a plateau)."""
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    counts, edges = np.histogram(values, bins=OTSU_BINS)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = np.nan_to_num(weight_low * weight_high * (mean_low - mean_high) ** 2)[:-1]
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # a plateau when the classes are flat
    return float(edges[int(best[len(best) // 2]) + 1])


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(6-connected component labels, voxels per label with the background's count set to 0)."""
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels, sizes


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 6-connected component of `mask` and fill its enclosed holes."""
    labels, sizes = _components(mask)
    if not sizes.any():
        return np.zeros(mask.shape, bool)
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))


def background_level(image: np.ndarray) -> float:
    """The intensity above which a voxel is part of the object (see the module docstring)."""
    edge = image[_faces(image.shape)]
    median, upper = np.percentile(edge, [50, 90])
    level = median + EDGE_SPREADS * (upper - median) + FRACTION_OF_BRIGHT * np.percentile(image, 99)
    positive = image[image > 0]
    ceiling = 0.5 * otsu_threshold(positive) if positive.size else level  # a crop: tissue all the way out
    return float(min(level, ceiling))


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """The scanned object (bool, the image's shape): see the module docstring."""
    image = np.nan_to_num(np.asarray(image, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not (image > 0).any():
        return np.zeros(image.shape, bool)
    mask = ndimage.binary_fill_holes(image > background_level(image))
    for axis in range(3):
        in_slices = np.ones((3, 3, 3), bool)
        in_slices[tuple(slice(None) if a != axis else [0, 2] for a in range(3))] = False  # no links across slices
        mask = ndimage.binary_fill_holes(mask, structure=in_slices)
    labels, sizes = _components(mask)
    if not sizes.any():
        return mask
    return np.isin(labels, np.flatnonzero(sizes >= MIN_COMPONENT_OF_LARGEST * sizes.max()))


def voxel_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in ml."""
    return abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000


def extent_mm(mask: np.ndarray, affine: np.ndarray) -> tuple[float, float, float]:
    """Size of the mask's bounding box in mm along R-L, A-P, S-I (array axes mapped by the affine's orientation);
    zeros for an empty mask."""
    box = bounding_box(mask)
    if box is None:
        return (0.0, 0.0, 0.0)
    spacing = spacing_of(affine)
    sizes = [(hi - lo) * spacing[axis] for axis, (lo, hi) in enumerate(box)]
    ornt = nib.io_orientation(affine)
    by_world = [0.0, 0.0, 0.0]
    for axis, (world, _) in enumerate(ornt):
        by_world[int(world)] = round(float(sizes[axis]), 1)
    return tuple(by_world)  # type: ignore[return-value]


def volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) * voxel_ml(affine)


def _faces(shape: tuple[int, ...]) -> np.ndarray:
    on_faces = np.zeros(shape, bool)
    for axis in range(len(shape)):
        index = [slice(None)] * len(shape)
        for end in (0, -1):
            index[axis] = end
            on_faces[tuple(index)] = True
    return on_faces


def border_share(mask: np.ndarray) -> float:
    """Share of the mask's voxels on the array's six faces: > 0 when the object is cut by the field of view."""
    count = np.count_nonzero(mask)
    return float(np.count_nonzero(mask & _faces(mask.shape))) / count if count else 0.0


def faces_covered(mask: np.ndarray) -> float:
    """Share of the array's face voxels inside the mask: near 1 when the mask fills the field of view (a
    non-zero region that includes a noisy or constant background)."""
    faces = _faces(mask.shape)
    return float(np.count_nonzero(mask & faces)) / float(np.count_nonzero(faces))

