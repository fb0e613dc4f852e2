"""One synthetic subject: draw every parameter, then render the images deterministically from them.

Randomness comes from independent streams per component, each seeded by
SeedSequence(cohort_seed, spawn_key=(case_index, STREAMS[component])): a subject is the same whatever
else the cohort holds, whichever worker makes it, and whichever channels or tasks are asked for.

render_subject, in order: warp the template onto a head-sized image grid (pose + deformation), lay
the head around the brain, add the lesions, mix tissue fractions into each channel's contrast with
texture, bias, phase and Rician noise, and simulate the k-space slab.

To rebuild a subject from its record in groundtruth/generator.json:
    render_subject(groundtruth.from_plain(SubjectParams, case["parameters"]), spacing, orientation)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from autopipe.mri.coils import CoilGeometry
from autopipe.synth import contrast, geometry, head, kspace, lesions, tissues
from autopipe.synth.fields import random_smooth_field
from autopipe.synth.resample import (
    SMOOTHED_CHANNELS,
    antialias_sigma,
    image_points,
    resample,
    subgrid,
    template_channel,
    to_sitk,
    warp_transform,
)
from autopipe.synth.template import Template, load_template

STREAMS = {"pose": 0, "deformation": 1, "head": 2, "lesions": 3, "appearance": 4, "kspace": 5, "hand_function": 6,
           "clinical": 7, "field_of_view": 8}
OUTSIDE_DISTANCE_MM = 1000.0  # signed distance given to points outside the template box (air)
Deformed = tuple[np.ndarray, geometry.Grid]  # a displacement field [nx, ny, nz, 3] (mm) and its grid


@dataclass(frozen=True)
class SubjectSpec:
    """What the cohort asks of every subject (from SynthOptions)."""

    channels: tuple[str, ...]
    kspace: bool
    num_coils: int
    mask_type: str
    acceleration: float
    calibration_size: int | None
    kspace_slices: int


@dataclass(frozen=True)
class SubjectParams:
    """Every random parameter of one subject; rendering is a deterministic function of these."""

    cohort_seed: int
    case_index: int
    pose: geometry.Pose
    deformation: geometry.Deformation
    head: head.HeadParams
    lesions: lesions.LesionParams
    acquisition: contrast.Acquisition
    appearances: tuple[contrast.ChannelAppearance, ...]
    kspace: kspace.KspaceParams | None
    margin_mm: float
    truncation_mm: float


@dataclass(frozen=True)
class KspaceSlab:
    """The k-space file's arrays and attributes, plus the coil geometry for the ground truth."""

    kspace: np.ndarray
    mask: np.ndarray
    reconstruction_sense: np.ndarray
    segmentation: np.ndarray
    attrs: dict
    coils: CoilGeometry


@dataclass(frozen=True)
class RenderedSubject:
    """A subject's image grid, int16 channel images, ground-truth maps and optional k-space."""

    grid: geometry.Grid
    images: dict[str, np.ndarray]
    lesion_label: np.ndarray
    lesion_fraction: np.ndarray
    brain_mask: np.ndarray
    tissue_labels: np.ndarray
    total_load_ml: float
    motor_load_ml: float
    kspace: KspaceSlab | None


def stream(cohort_seed: int, case_index: int, component: str) -> np.random.Generator:
    """The random stream of one component of one subject."""
    return np.random.default_rng(np.random.SeedSequence(cohort_seed, spawn_key=(case_index, STREAMS[component])))


def sample_subject(cohort_seed: int, case_index: int, spec: SubjectSpec) -> SubjectParams:
    """Draw all parameters of subject `case_index` of the cohort seeded `cohort_seed`."""
    template = load_template()
    appearance_rng = stream(cohort_seed, case_index, "appearance")
    acquisition = contrast.sample_acquisition(appearance_rng)
    appearances = tuple(contrast.sample_appearance(appearance_rng, channel) for channel in spec.channels)
    kspace_params = None
    if spec.kspace:
        kspace_params = kspace.sample_kspace_params(stream(cohort_seed, case_index, "kspace"), spec.num_coils,
                                                    spec.mask_type, spec.acceleration, spec.calibration_size,
                                                    spec.kspace_slices)
    fov_rng = stream(cohort_seed, case_index, "field_of_view")
    return SubjectParams(
        cohort_seed=cohort_seed, case_index=case_index,
        pose=geometry.sample_pose(stream(cohort_seed, case_index, "pose")),
        deformation=geometry.sample_deformation(stream(cohort_seed, case_index, "deformation"), template),
        head=head.sample_head(stream(cohort_seed, case_index, "head")),
        lesions=lesions.sample_lesions(stream(cohort_seed, case_index, "lesions"), template),
        acquisition=acquisition, appearances=appearances, kspace=kspace_params,
        margin_mm=float(fov_rng.uniform(4.0, 14.0)), truncation_mm=float(fov_rng.uniform(0.0, 6.0)))


def render_subject(params: SubjectParams, spacing: tuple[float, float, float], axcodes: str) -> RenderedSubject:
    """Images and ground truth of a subject on a grid of `spacing` (mm per array axis) in orientation `axcodes`."""
    template = load_template()
    field, field_grid = geometry.displacement_field(params.deformation, template)
    transform = warp_transform(params.pose, field, field_grid)
    low, high = geometry.head_box(template, params.pose, params.deformation, params.head.max_extent_mm,
                                  params.truncation_mm, params.margin_mm)
    grid = geometry.output_grid(low, high, spacing, axcodes)
    fine, factors = geometry.supersampling(grid)
    lesion_map = lesions.rasterize_lesions(params.lesions, template)
    fractions = _fractions(params, template, fine, transform, lesion_map, (field, field_grid))
    if any(f > 1 for f in factors):
        fractions = fractions.map(lambda a: geometry.average_blocks(a, factors))
    bias = contrast.bias_field(params.acquisition, grid.shape, grid.spacing)
    phase = contrast.phase_map(params.acquisition, grid.shape, grid.spacing)
    images, flair = {}, None
    for appearance in params.appearances:
        clean = contrast.complex_image(fractions, appearance, bias, phase, grid.spacing)
        noisy = contrast.rician_magnitude(clean, contrast.noise_sigma(appearance), appearance.noise_seed)
        images[appearance.channel] = contrast.to_int16(noisy)
        flair = clean if flair is None else flair
    label = tissues.lesion_label(fractions)
    slab = None
    if params.kspace is not None:
        centre = _ventricle_centre_index(template, params, grid, (field, field_grid))
        slab = _kspace_slab(params, grid, axcodes, flair, label, centre)
    return RenderedSubject(grid, images, label, fractions.lesion, tissues.brain_mask(fractions),
                           tissues.tissue_labels(fractions), lesion_map.volume_ml(template),
                           lesion_map.volume_ml(template, template.motor), slab)


def warm_up(spacing: tuple[float, float, float], axcodes: str) -> None:
    """Load the template and blur its maps for this spacing now (cached), e.g. before forking workers."""
    load_template()
    grid, _ = geometry.supersampling(geometry.output_grid(np.zeros(3), np.full(3, 10.0), spacing, axcodes))
    for name in SMOOTHED_CHANNELS:
        template_channel(name, antialias_sigma(grid))
    template_channel("signed_distance", (0.0, 0.0, 0.0))


def _fractions(params: SubjectParams, template: Template, grid: geometry.Grid, transform: sitk.Transform,
               lesion_map: lesions.LesionMap, deformation: Deformed) -> tissues.Fractions:
    """Warp the template fractions, the distance map and the lesions onto `grid` and add the head."""
    sigma = antialias_sigma(grid)
    gm, wm = (resample(template_channel(name, sigma), grid, transform) for name in SMOOTHED_CHANNELS)
    distance = resample(template_channel("signed_distance", (0.0, 0.0, 0.0)), grid, transform, OUTSIDE_DISTANCE_MM)
    lesion = _lesion_on_grid(lesion_map, template, grid, transform, params.pose, deformation, sigma)
    variation = random_smooth_field(params.head.field_seed, grid.shape, grid.spacing, params.head.field_control_mm)
    width = float(np.cbrt(np.prod(grid.spacing)))
    layers = head.head_fractions(distance, variation, params.head, width)
    return tissues.tissue_fractions(gm, wm, lesion, layers)


def _lesion_on_grid(lesion_map: lesions.LesionMap, template: Template, grid: geometry.Grid,
                    transform: sitk.Transform, pose: geometry.Pose, deformation: Deformed,
                    sigma: tuple[float, float, float]) -> np.ndarray:
    """Resample the lesion box only onto the part of `grid` it can reach (the rest stays 0)."""
    out = np.zeros(grid.shape, np.float32)
    if lesion_map.fractions.size == 0:
        return out
    fractions = lesion_map.fractions
    if any(sigma):
        fractions = ndimage.gaussian_filter(fractions, sigma)
    corners = np.stack(np.meshgrid(*[np.linspace(0, n - 1, 5) for n in fractions.shape], indexing="ij"), -1)
    points = image_points(template.world(corners.reshape(-1, 3) + np.array(lesion_map.offset)), pose, *deformation)
    index = (points - grid.affine[:3, 3]) @ np.linalg.inv(grid.affine[:3, :3]).T
    margin = 4.0 / np.array(grid.spacing)
    part, region = subgrid(grid, index.min(0) - margin, index.max(0) + margin)
    out[region] = resample(to_sitk(fractions, lesion_map.affine(template)), part, transform)
    return out


def _ventricle_centre_index(template: Template, params: SubjectParams, grid: geometry.Grid,
                            deformation: Deformed) -> np.ndarray:
    """Fractional voxel index of the lateral ventricles' centre in the image grid."""
    point = image_points(template.ventricle_centre_mm[None], params.pose, *deformation)[0]
    return np.linalg.solve(grid.affine[:3, :3], point - grid.affine[:3, 3])


def _kspace_slab(params: SubjectParams, grid: geometry.Grid, axcodes: str, flair: np.ndarray,
                 label: np.ndarray, centre_index: np.ndarray) -> KspaceSlab:
    """Simulate the k-space file's content for the slab around the ventricles (channel 0's contrast)."""
    kp = params.kspace
    axis = kspace.slice_axis(axcodes)
    indices = kspace.slab_indices(float(centre_index[axis]), grid.shape[axis], kp.num_slices)
    image = kspace.take_slices(flair, axis, indices)
    coils = kspace.slab_geometry(kp, grid, axis)
    maps = kspace.slab_coil_maps(coils, grid, axis, indices)
    sigma = contrast.noise_sigma(params.appearances[0])
    data = kspace.simulate_kspace(image, maps, sigma, kp.noise_seed)
    mask, calibration, effective = kspace.sampling_mask(kp, image.shape[1:])
    attrs = {"fully_sampled": True, "acceleration": kp.acceleration, "effective_acceleration": effective,
             "calibration_size": calibration, "mask_type": kp.mask_type, "slice_axis": axis,
             "slice_indices": indices.astype(np.int64), "noise_sigma": sigma, "affine": grid.affine.astype(np.float64)}
    return KspaceSlab(data, mask.astype(np.uint8), kspace.sense_reference(data, maps),
                      kspace.take_slices(label, axis, indices).astype(np.uint8), attrs, coils)
