"""What the fingerprint measures in one case: geometry, crop, intensities, lesions, skull stripping, k-space.

`fingerprint_case` is a top-level function of a picklable job, so `parallel_map` can run it in worker
processes; it returns its expected errors instead of raising, so one bad case never stops the rest.

Skull-stripping rule (per case, on channel 0): the background value is the most common value on
the volume's six faces; the head looks skull-stripped when at least 20% of all voxels equal it
exactly. A scan of a head with skull has Rician noise in the air around it, so almost no voxel
repeats the border value; a skull-stripped scan has a constant (usually zero) background outside
the brain. The fraction, the background value, the crop ratio and the volume of the non-background
region are recorded as evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.cohort.image_io import UnreadableImage, axcodes_of, bounding_box, read_volume, spacing_of
from autopipe.cohort.kspace_file import read_kspace, read_kspace_header
from autopipe.mri.masks import calibration_region, effective_acceleration

SAMPLES_PER_CASE = 10_000  # per channel and region; nnU-Net draws 1e8 over the cohort, percentiles need far fewer
SAMPLING_SEED = 1234
STRIPPED_MIN_BACKGROUND_FRACTION = 0.2
OTSU_BINS = 256
LESION_CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connectivity


@dataclass(frozen=True)
class CaseJob:
    """Everything `fingerprint_case` needs to read one case."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    kspace: Path | None
    lesion_labels: tuple[int, ...] = (1,)
    samples: int = SAMPLES_PER_CASE


@dataclass
class CaseResult:
    """A case's JSON-ready record plus intensity samples per channel (foreground = lesion, brain = tissue)."""

    case_id: str
    record: dict = field(default_factory=dict)
    foreground: list[np.ndarray] = field(default_factory=list)
    brain: list[np.ndarray] = field(default_factory=list)
    error: str | None = None


def fingerprint_case(job: CaseJob) -> CaseResult:
    """Measure one case; reading errors come back in `error`."""
    try:
        volumes = [read_volume(p) for p in job.images]
        label = None if job.label is None else np.asarray(read_volume(job.label).data)
    except (UnreadableImage, OSError) as exc:
        return CaseResult(job.case_id, error=f"cannot read: {exc}")
    shapes = {v.shape for v in volumes} | ({label.shape} if label is not None else set())
    if len(shapes) != 1:
        return CaseResult(job.case_id, error=f"channels and label differ in shape: {sorted(shapes)}")
    first = volumes[0]
    channels = [np.asarray(v.data, np.float32) for v in volumes]
    head = ndimage.binary_fill_holes(np.any([c != 0 for c in channels], axis=0))
    record = {**geometry(first.affine, first.shape), **crop(head)}
    rng = np.random.default_rng(SAMPLING_SEED)
    lesion = np.zeros(first.shape, bool) if label is None else np.isin(label, job.lesion_labels)
    foreground = [_sample(c[lesion], job.samples, rng) for c in channels]
    brain_masks = [head & (c > otsu_threshold(c[head])) for c in channels]
    brain = [_sample(c[m], job.samples, rng) for c, m in zip(channels, brain_masks, strict=True)]
    voxel_ml = math.prod(first.spacing) / 1000
    record["tissue_volume_ml"] = round(float(brain_masks[0].sum()) * voxel_ml, 1)  # channel 0 above Otsu
    record["lesions"] = lesion_stats(lesion, first.spacing) if label is not None else None
    record["skull_stripping"] = skull_stripping_evidence(channels[0], voxel_ml, record["crop_ratio"])
    if job.kspace is not None:
        record["kspace"] = kspace_summary(job.kspace)
    return CaseResult(job.case_id, record, foreground, brain)


def geometry(affine: np.ndarray, shape: tuple[int, ...]) -> dict:
    """Spacing, shape and orientation in file order, and the file axis along R-L, A-P, S-I (`ras_axes`)."""
    spacing = spacing_of(affine)
    ornt = nib.io_orientation(affine)
    ras_axes = [int(np.flatnonzero(ornt[:, 0] == j)[0]) for j in range(3)]
    return {"spacing": [round(s, 6) for s in spacing], "shape": [int(s) for s in shape],
            "axcodes": axcodes_of(affine), "ras_axes": ras_axes}


def crop(head: np.ndarray) -> dict:
    """Shape of the bounding box of the nonzero region (holes filled) and its share of all voxels."""
    box = bounding_box(head)
    if box is None:
        return {"shape_after_crop": [int(s) for s in head.shape], "crop_ratio": 1.0}
    cropped = [hi - lo for lo, hi in box]
    return {"shape_after_crop": cropped, "crop_ratio": round(math.prod(cropped) / head.size, 4)}


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold maximizing the between-class variance of a 256-bin histogram."""
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
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.nanargmax(between[:-1])) + 1])


def lesion_stats(lesion: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """26-connected lesions: count, volumes (mm^3, largest first), smallest, largest, total load."""
    components, count = ndimage.label(lesion, structure=LESION_CONNECTIVITY)
    voxel_mm3 = math.prod(spacing)
    sizes = np.bincount(components.ravel())[1:] if count else np.zeros(0, int)
    volumes = sorted((round(float(s) * voxel_mm3, 2) for s in sizes), reverse=True)
    return {"count": int(count), "volumes_mm3": volumes, "smallest_mm3": volumes[-1] if volumes else None,
            "largest_mm3": volumes[0] if volumes else None, "total_mm3": round(sum(volumes), 2)}


def skull_stripping_evidence(image: np.ndarray, voxel_ml: float, crop_ratio: float) -> dict:
    """The rule in the module docstring, with the numbers it used."""
    faces = np.concatenate([np.take(image, i, axis=a).ravel() for a in range(image.ndim) for i in (0, -1)])
    values, counts = np.unique(faces, return_counts=True)
    background = float(values[np.argmax(counts)])
    fraction = float(np.mean(image == background))
    return {"looks_stripped": fraction >= STRIPPED_MIN_BACKGROUND_FRACTION, "background_value": background,
            "background_fraction": round(fraction, 4), "crop_ratio": crop_ratio,
            "object_volume_ml": round(float(np.sum(image != background)) * voxel_ml, 1)}


def kspace_summary(path: Path) -> dict:
    """Coils, matrix, slices and the sampling actually present: acceleration and calibration measured."""
    try:
        header = read_kspace_header(path)
        data = read_kspace(path, names=("mask",) if "mask" in header.datasets else ("kspace",), slices=slice(0, 1))
    except (OSError, KeyError) as exc:
        return {"error": f"cannot read: {exc}"}
    attrs = header.attrs
    # no mask stored: what was acquired is what is nonzero
    sampled = np.asarray(data["mask"]) != 0 if "mask" in data else np.any(np.abs(data["kspace"][0]) > 0, axis=0)
    full = np.broadcast_to(sampled, header.matrix)
    return {
        "coils": header.num_coils, "matrix": list(header.matrix), "slices": header.num_slices,
        "mask_type": attrs.get("mask_type"), "fully_sampled": bool(attrs.get("fully_sampled", False)),
        "acceleration_attr": attrs.get("acceleration"),
        "effective_acceleration": round(effective_acceleration(full), 3) if full.any() else None,
        "calibration_size_attr": attrs.get("calibration_size"),
        "calibration_size": measured_calibration(sampled, header.matrix),
        "has_segmentation": "segmentation" in header.datasets,
        "has_sense_reference": "reconstruction_sense" in header.datasets,
    }


def measured_calibration(sampled: np.ndarray, matrix: tuple[int, int]) -> int:
    """Fully sampled centre: the run of sampled lines through the centre (line masks), else the largest
    fully sampled centred square."""
    lines = _as_lines(sampled)
    if lines is not None:
        centre = len(lines) // 2
        if not lines[centre]:
            return 0
        low, high = centre, centre
        while low > 0 and lines[low - 1]:
            low -= 1
        while high < len(lines) - 1 and lines[high + 1]:
            high += 1
        return high - low + 1
    size = 0
    while size < min(matrix) and sampled[calibration_region(matrix, size + 1)].all():
        size += 1
    return size


def _as_lines(sampled: np.ndarray) -> np.ndarray | None:
    """A [W] mask, or a 2D mask constant along one axis, as its 1D line pattern; None for 2D patterns."""
    if sampled.ndim == 1:
        return sampled
    if (sampled == sampled[:1, :]).all():
        return sampled[0, :]
    if (sampled == sampled[:, :1]).all():
        return sampled[:, 0]
    return None


def _sample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` values drawn with replacement (nnU-Net's way); empty when there is nothing to draw from."""
    values = np.asarray(values, np.float32)
    return values[rng.integers(0, values.size, n)] if values.size else values
