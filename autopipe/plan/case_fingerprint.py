"""What the fingerprint measures in one case: geometry, crop, intensities, lesions, what the scan holds, k-space.

`fingerprint_case` is a top-level function of a picklable job, so `parallel_map` can run it in worker
processes; it returns its expected errors instead of raising, so one bad case never stops the rest.

What the scan holds (autopipe.anatomy.head_evidence, on the skull-stripping channel in RAS order):
whether a whole brain is in view and whether the skull is still there, decided per case from the
scanned object's size and from how much of it the brain extractor keeps. The same rule runs again
in preprocessing, so the plan's summary and what preprocessing does agree case by case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from autopipe.anatomy.brain_extraction import extract_brain
from autopipe.anatomy.foreground import otsu_threshold
from autopipe.anatomy.head_evidence import head_evidence
from autopipe.cohort.image_io import UnreadableImage, Volume, axcodes_of, bounding_box, read_volume, spacing_of, to_ras
from autopipe.cohort.kspace_file import read_kspace, read_kspace_header
from autopipe.mri.masks import calibration_region, effective_acceleration

SAMPLES_PER_CASE = 10_000  # per channel and region; nnU-Net draws 1e8 over the cohort, percentiles need far fewer
SAMPLING_SEED = 1234
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
    strip_channel: int = 0  # the channel skull stripping would run on (T1 when there is one)


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
    record["head"] = scan_contents(volumes[job.strip_channel])
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


def lesion_stats(lesion: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """26-connected lesions: count, volumes (mm^3, largest first), smallest, largest, total load."""
    components, count = ndimage.label(lesion, structure=LESION_CONNECTIVITY)
    voxel_mm3 = math.prod(spacing)
    sizes = np.bincount(components.ravel())[1:] if count else np.zeros(0, int)
    volumes = sorted((round(float(s) * voxel_mm3, 2) for s in sizes), reverse=True)
    return {"count": int(count), "volumes_mm3": volumes, "smallest_mm3": volumes[-1] if volumes else None,
            "largest_mm3": volumes[0] if volumes else None, "total_mm3": round(sum(volumes), 2)}


def scan_contents(volume: Volume) -> dict:
    """Whole brain in view? Skull still there? With the evidence (autopipe.anatomy.head_evidence)."""
    ras = to_ras(volume.with_data(np.asarray(volume.data, np.float32)))
    evidence, _, _ = head_evidence(ras.data, ras.affine, extract_brain)
    return evidence.to_plain()


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
