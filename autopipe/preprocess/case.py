"""One case from raw files to the arrays a trainer reads: the preprocessing steps in order, timed.

read + reorient -> co-register channels -> skull strip -> N4 -> register to template -> resample onto
the training grid -> normalize -> write (arrays, properties, transforms, QC). Every step is a function
of its own module; this one only wires them and records what each did and how long it took, and
what autopipe.preprocess.plausibility finds implausible in the results. The raw files are only read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autopipe import __version__
from autopipe.anatomy.foreground import border_share, faces_covered
from autopipe.cohort.image_io import Header, Volume, bounding_box, read_header, read_volume, to_ras
from autopipe.cohort.problem import dims
from autopipe.files import write_json
from autopipe.layout import case_paths
from autopipe.plan.configs import PreprocessingPlan
from autopipe.preprocess import plausibility, qc
from autopipe.preprocess.bias_field import n4_correct
from autopipe.preprocess.contrast import case_contrast
from autopipe.preprocess.geometry import Grid, resampled_grid
from autopipe.preprocess.labels import binarize, threshold_interpolated
from autopipe.preprocess.normalize import ct_normalize, zscore
from autopipe.preprocess.properties import (
    Anatomy,
    CaseProperties,
    ChannelNormalization,
    GridRecord,
    NativeGrid,
    Plausibility,
    Source,
    Transforms,
)
from autopipe.preprocess.registration import Registration, apply, register
from autopipe.preprocess.skull_strip import StripResult, strip_skull
from autopipe.preprocess.storage import FORMAT_VERSION, write_case_arrays
from autopipe.templates import load_template, nearest_resolution

MIN_BRAIN_ML = 1.0  # below this no step after stripping can run; implausible volumes above it are findings
GRID_TOLERANCE_MM = 1e-3


class CaseError(Exception):
    """A problem with one case's data that the analyst can act on; the message says what and what to do."""


@dataclass(frozen=True)
class CaseJob:
    """Everything one worker needs for one case (picklable)."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    out_dir: Path
    plan: PreprocessingPlan
    digest: str
    kspace: Path | None = None
    kspace_dir: Path | None = None
    ct_stats: dict[int, dict] = field(default_factory=dict)
    qc: bool = True
    classes: dict[str, int] | None = None  # dataset.json's labels: the classes of the k-space slices


class Timer:
    """Seconds per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = round(self.seconds.get(step, 0.0) + time.perf_counter() - start, 3)


def preprocess_case(job: CaseJob) -> CaseProperties:
    """Run every step for one case and write its outputs; returns the properties written (CASE.json).

    Raises CaseError (bad data, with what to do), autopipe.cohort.image_io.UnreadableImage (a file that
    cannot be read), or any other exception for a bug.
    """
    plan, timer = job.plan, Timer()
    with timer("read"):
        native, channels, label, stored_label = _read(job)
    reference = channels[0]
    with timer("coregister"):
        aligned, coregistrations = _coregister(job, channels)
    with timer("skull_strip"):
        stripped = strip_skull(aligned[plan.skull_strip_channel], reference.affine, plan.skull_strip)
        brain = stripped.brain
        _check_brain(job, brain, reference)
    with timer("bias_field"):
        corrected, bias_ranges = _correct_bias(job, aligned, brain, reference)
    to_template, registration_dice = None, None
    if plan.field_of_view == "whole_brain":
        with timer("register"):
            to_template, registration_dice = _register_to_template(job, reference.with_data(corrected[0] * brain),
                                                                   brain)
    with timer("resample"):
        full, box, grid, transforms = _training_grid(job, reference.with_data(brain.astype(np.float32)), to_template)
        images = np.stack([apply(reference.with_data(c), grid, transforms, plan.image_order, job.out_dir / "transforms")
                           for c in corrected])
        grid_brain = _resample_mask(reference.with_data(brain), grid, transforms, job)
        grid_seg = None if label is None else _resample_mask(reference.with_data(label), grid, transforms, job)
    with timer("normalize"):
        images, statistics = _normalize(job, images, grid_brain)
    contrast = None
    if plan.space == "template":
        with timer("contrast"):
            contrast = case_contrast(images, grid_brain, plan.template, full, box)
    with timer("write"):
        arrays_path, properties_path = case_paths(job.out_dir, job.case_id)
        lesion_voxels = write_case_arrays(arrays_path, images, grid_brain, grid_seg, plan.registration_seed)
    if job.qc:
        with timer("qc"):
            _write_qc(job, reference, channels[0].data, corrected[0], brain, label, images[0], grid_brain, grid_seg,
                      grid)
    kspace = None
    if job.kspace is not None and job.kspace_dir is not None:
        with timer("kspace"):
            kspace = _prepare_kspace(job, stored_label)
    voxel_ml = math.prod(reference.spacing) / 1000
    measured = _measurements(plan, stripped, bias_ranges, registration_dice, label, voxel_ml)
    properties = CaseProperties(
        format_version=FORMAT_VERSION,
        autopipe_version=__version__,
        case=job.case_id,
        plan_digest=job.digest,
        source=Source(tuple(str(p) for p in job.images), None if job.label is None else str(job.label)),
        native=NativeGrid.of_header(native),
        space=plan.space,
        template=plan.template,
        full_grid=GridRecord.of(full),
        crop_box=tuple(box),
        grid=GridRecord.of(grid),
        transforms=Transforms("transforms", to_template, tuple(transforms), coregistrations),
        arrays=arrays_path.name,
        brain_volume_ml=round(float(brain.sum()) * voxel_ml, 2),
        lesion_volume_ml=None if label is None else round(float(label.sum()) * voxel_ml, 3),
        lesion_voxels_in_grid=lesion_voxels if label is not None else None,
        registration_dice=None if registration_dice is None else round(registration_dice, 4),
        anatomy=Anatomy(stripped.evidence, stripped.stripped_with),
        plausibility=Plausibility(measured, tuple(plausibility.findings(measured))),
        normalization=statistics,
        contrast=contrast,
        kspace=kspace,
        timings=timer.seconds,
        seconds=round(sum(timer.seconds.values()), 2),
    )
    write_json(properties_path, properties.to_json())
    return properties


def _read(job: CaseJob) -> tuple[Header, list[Volume], np.ndarray | None, np.ndarray | None]:
    """(channel 0's geometry as stored, every channel in RAS float32, the binarized label in RAS, and the label
    with its values as stored (the k-space slices keep every class), or None twice)."""
    native = read_header(job.images[0])
    channels = []
    for path in job.images:
        volume = read_volume(path, np.float32)
        if volume.data.ndim != 3:
            raise CaseError(f"{path.name}: a 3D image is expected, got shape {dims(volume.shape)}; "
                            "split 4D series into one file per channel")
        channels.append(to_ras(volume.with_data(np.nan_to_num(volume.data, nan=0.0, posinf=0.0, neginf=0.0))))
    if job.label is None:
        return native, channels, None, None
    raw = read_volume(job.label)
    stored = raw.with_data(binarize(raw.data, job.plan.lesion_labels))
    label = to_ras(stored)
    if not _same_grid(label, channels[0]):
        raise CaseError(f"{job.label.name}: its grid ({dims(label.shape)}, spacing "
                        f"{dims(label.spacing)}) differs from {job.images[0].name} ({dims(channels[0].shape)}, "
                        f"{dims(channels[0].spacing)}); resample the label onto the first channel's grid")
    return native, channels, label.data, raw.data


def _same_grid(a: Volume, b: Volume) -> bool:
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=GRID_TOLERANCE_MM)


def _coregister(job: CaseJob, channels: list[Volume]) -> tuple[list[np.ndarray], dict[int, Registration]]:
    """Every channel on channel 0's grid: further channels registered (rigidly by default) and resampled."""
    plan, reference = job.plan, channels[0]
    aligned, registrations = [reference.data], {}
    for k, volume in enumerate(channels[1:], start=1):
        registration = register(reference, volume, plan.coregistration, plan.registration_spacing_mm,
                                plan.registration_seed)
        registration = registration.relocated(job.out_dir / "transforms", f"{job.case_id}_channel{k}_to_channel0")
        registrations[k] = registration
        aligned.append(apply(volume, Grid.of(reference), registration.forward, plan.image_order,
                             job.out_dir / "transforms"))
    return aligned, registrations


def _check_brain(job: CaseJob, brain: np.ndarray, reference: Volume) -> None:
    volume_ml = float(brain.sum()) * math.prod(reference.spacing) / 1000
    if volume_ml < MIN_BRAIN_ML:
        what = "the non-zero region" if job.plan.skull_strip == "none" else "skull stripping"
        raise CaseError(f"{job.images[job.plan.skull_strip_channel].name}: {what} found only {volume_ml:.1f} ml of "
                        f"brain (at least {MIN_BRAIN_ML:.0f} ml needed to go on); check the image, or set "
                        "preprocessing.skull_strip in plans.json")


def _correct_bias(job: CaseJob, aligned: list[np.ndarray], brain: np.ndarray, reference: Volume
                  ) -> tuple[list[np.ndarray], tuple[float | None, ...]]:
    """N4 per channel where planned: (corrected channels, the field's range inside the brain, None if not run)."""
    plan, corrected, ranges = job.plan, [], []
    for image, method in zip(aligned, plan.bias_field, strict=True):
        if method != "n4":
            corrected.append(image)
            ranges.append(None)
            continue
        fixed, field = n4_correct(image, brain, reference.spacing, shrink=plan.n4_shrink_factor,
                                  iterations=plan.n4_iterations, tolerance=plan.n4_tolerance)
        corrected.append(fixed)
        ranges.append(round(plausibility.bias_field_range(field, brain), 3) if np.isfinite(fixed).all()
                      else float("inf"))
    return corrected, tuple(ranges)


def _measurements(plan: PreprocessingPlan, stripped: StripResult, bias_ranges: tuple[float | None, ...],
                  registration_dice: float | None, label: np.ndarray | None,
                  voxel_ml: float) -> plausibility.Measurements:
    brain, evidence = stripped.brain, stripped.evidence
    lesion_ml = outside = None
    if label is not None:
        lesion = label > 0
        lesion_ml = round(float(lesion.sum()) * voxel_ml, 3)
        outside = round(float((lesion & ~brain).sum()) / max(1, int(lesion.sum())), 4) if lesion.any() else None
    return plausibility.Measurements(
        whole_brain=evidence.whole_brain, method=plan.skull_strip, stripped_with=stripped.stripped_with,
        decision=evidence.reason, brain_ml=round(float(brain.sum()) * voxel_ml, 2),
        foreground_ml=evidence.foreground_ml, brain_on_border=round(border_share(brain), 5),
        extractor_share=evidence.extractor_share, faces_covered=round(faces_covered(brain), 4),
        bias_field_range=bias_ranges, registration_dice=registration_dice, lesion_ml=lesion_ml,
        lesion_outside_brain=outside)


def _register_to_template(job: CaseJob, brain_image: Volume, brain: np.ndarray) -> tuple[Registration, float]:
    """Affine (by default) registration of the stripped, corrected first channel to the template brain.

    Returns the relocated transforms and the Dice of the warped brain mask with the template's: a number
    to flag failed registrations by (typically 0.95-0.97 with Affine).
    """
    plan = job.plan
    template, template_mask = load_template(plan.template, nearest_resolution(plan.registration_spacing_mm))
    registration = register(template, brain_image, plan.registration_transform, plan.registration_spacing_mm,
                            plan.registration_seed)
    registration = registration.relocated(job.out_dir / "transforms", f"{job.case_id}_to_template")
    warped = _resample_mask(brain_image.with_data(brain), Grid.of(template_mask), registration.forward, job)
    reference = template_mask.data > 0
    dice = 2 * float((warped & reference).sum()) / max(1.0, float(warped.sum() + reference.sum()))
    return registration, dice


def _training_grid(job: CaseJob, brain: Volume, to_template: Registration
                   ) -> tuple[Grid, tuple[tuple[int, int], ...], Grid, tuple[str, ...]]:
    """(full grid, crop box, cropped grid, transforms from channel 0 onto it) for the plan's space."""
    plan = job.plan
    if plan.space == "template":
        template_image, _ = load_template(plan.template, 1)
        full, transforms = resampled_grid(Grid.of(template_image), plan.target_spacing), to_template.forward
    else:
        full, transforms = resampled_grid(Grid.of(brain), plan.target_spacing), ()
    mask = _resample_mask(brain, full, transforms, job)
    margin = math.ceil(plan.crop_margin_mm / min(plan.target_spacing))
    box = bounding_box(mask, margin)
    if box is None:
        raise CaseError(f"{job.case_id}: the brain mask falls outside the {plan.space} grid after registration; "
                        "look at the QC picture and the registration")
    return full, box, full.crop(box), tuple(transforms)


def _resample_mask(mask: Volume, grid: Grid, transforms: tuple[str, ...], job: CaseJob) -> np.ndarray:
    """A 0/1 mask onto `grid` (linear interpolation, threshold 0.5: no new islands)."""
    resampled = apply(mask.with_data(mask.data.astype(np.float32)), grid, transforms, job.plan.label_order,
                      job.out_dir / "transforms")
    return threshold_interpolated(resampled) if job.plan.label_order > 0 else resampled.astype(np.uint8)


def _normalize(job: CaseJob, images: np.ndarray, brain: np.ndarray
               ) -> tuple[np.ndarray, tuple[ChannelNormalization, ...]]:
    out, statistics = np.empty_like(images), []
    for k, scheme in enumerate(job.plan.normalization):
        if scheme == "ct":
            stats = job.ct_stats.get(k)
            if stats is None:
                raise CaseError(f"channel {k} is normalized as CT but the cohort fingerprint has no intensity "
                                "statistics for it; run `autopipe plan` again")
            out[k] = ct_normalize(images[k], stats["mean"], stats["std"], stats["percentile_00_5"],
                                  stats["percentile_99_5"])
            statistics.append(ChannelNormalization(scheme, stats["mean"], stats["std"]))
            continue
        out[k], stats = zscore(images[k], brain if scheme == "zscore_brain" else None, job.plan.clip_percentiles)
        statistics.append(ChannelNormalization(scheme, **{key: round(v, 6) for key, v in stats.items()}))
    return out, tuple(statistics)


def _write_qc(job: CaseJob, reference: Volume, raw: np.ndarray, corrected: np.ndarray, brain: np.ndarray,
              label: np.ndarray | None, network_input: np.ndarray, grid_brain: np.ndarray,
              grid_seg: np.ndarray | None, grid: Grid) -> None:
    spacing = tuple(float(s) for s in reference.spacing)
    raw_views = qc.case_views(raw, spacing, brain, label)
    corrected_views = qc.case_views(corrected, spacing, brain, label, centre=raw_views.centre)
    network_views = qc.case_views(network_input, tuple(float(s) for s in grid.spacing), grid_brain, grid_seg)
    folder = job.out_dir / "qc"
    note = f"brain {float(brain.sum()) * math.prod(spacing) / 1000:.0f} ml"
    if label is not None:
        note += f", lesions {float(label.sum()) * math.prod(spacing) / 1000:.1f} ml"
    qc.write_case_qc(folder / f"{job.case_id}.png", job.case_id,
                     [("input", raw_views), ("bias-corrected + brain mask", corrected_views),
                      (f"network input ({job.plan.space} space)", network_views)], note=note)
    qc.save_views(folder / "views" / f"{job.case_id}.npz", corrected_views)


def _prepare_kspace(job: CaseJob, stored_label: np.ndarray | None) -> dict:
    """The case's k-space file prepared for the reconstruction trainer (coil maps, scaling, per-slice storage).

    Slices index the channel-0 image as stored (not reoriented), so the label comes in that order, with its
    values: the slices keep every class of dataset.json.
    """
    from autopipe.preprocess.kspace_prep import prepare_kspace_case

    destination = job.kspace_dir / f"{job.case_id}.h5"
    return prepare_kspace_case(job.kspace, destination, label=stored_label, lesion_labels=job.plan.lesion_labels,
                               classes=job.classes, coil_method=job.plan.coil_maps)
