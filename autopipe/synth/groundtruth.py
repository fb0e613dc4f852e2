"""The ground truth of a synthetic cohort, in `groundtruth/` (the pipeline never reads it as input).

    CASE_brain.nii.gz     uint8 brain mask on the image grid (template brain mask, >= half a voxel)
    CASE_tissues.nii.gz   uint8 tissue labels (0 background, 1 CSF, 2 GM, 3 WM, 4 lesion, 5 skull, 6 scalp)
    CASE_lesions.nii.gz   float32 partial-volume lesion fraction in [0, 1]; >= 0.5 is the lesion label
    CASE_pose.json        pose, deformation and the template -> image transforms
    generator.json        options, conventions, models and every subject's parameters (the `cases` list)
    motor_region_template.nii.gz   uint8 motor region in template space (hand-function model)

Everything here is JSON-ready and written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import Volume, write_volume
from autopipe.files import to_plain, write_text_atomic
from autopipe.synth import geometry
from autopipe.synth.subject import RenderedSubject, SubjectParams
from autopipe.synth.tissues import TISSUE_LABELS

FOLDER = "groundtruth"
MOTOR_REGION_FILE = "motor_region_template.nii.gz"
POSE_CONVENTION = (
    "RAS mm. template_to_image_rigid maps template world (ICBM152 2009) to image world: x_i = R x_t + t. The "
    "image voxel at x_i shows the template at x_t + u(x_t), x_t = R^T (x_i - t), u the deformation: a cubic "
    "B-spline random field (seed, control_mm, rms_mm; control values Gaussian-smoothed by control_smoothing "
    "spacings), plus (1/scale - 1)(x_t - centre_mm), minus ventricle_dilation_mm times the ventricle push "
    "(autopipe.synth.geometry.ventricle_push), sampled on a field_spacing_mm grid.")


def from_plain(cls: type, value: dict) -> object:
    """Rebuild a (nested, frozen) dataclass from its `plain` form, e.g. SubjectParams from generator.json.

    Lists become the tuples the type hints ask for, so the result compares equal to the original.
    """
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _from_plain(hints[f.name], value[f.name]) for f in dataclasses.fields(cls)})


def _from_plain(hint: object, value: object) -> object:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    if origin in (typing.Union, types.UnionType):
        return _from_plain(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v) for v in value)
        return tuple(_from_plain(a, v) for a, v in zip(args, value, strict=True))
    return value


def write_json(path: Path, value: object) -> Path:
    return write_text_atomic(path, json.dumps(to_plain(value), indent=1, allow_nan=False) + "\n")


def pose_record(params: SubjectParams, grid: geometry.Grid) -> dict:
    """CASE_pose.json: pose, deformation, and the transforms between template, image world and voxels."""
    matrix = params.pose.matrix()
    return {
        "convention": POSE_CONVENTION,
        "rotation_deg": params.pose.rotation_deg,
        "translation_mm": params.pose.translation_mm,
        "template_to_image_rigid": matrix,
        "image_to_template_rigid": np.linalg.inv(matrix),
        "deformation": params.deformation,
        "field_spacing_mm": geometry.FIELD_SPACING_MM,
        "control_smoothing": geometry.CONTROL_SMOOTHING,
        "image_affine": grid.affine,
        "image_shape": grid.shape,
    }


def write_case_groundtruth(root: Path, case_id: str, params: SubjectParams, rendered: RenderedSubject) -> list[Path]:
    """The case's ground-truth volumes and pose file; returns the paths written."""
    folder = root / FOLDER
    affine = rendered.grid.affine
    return [
        write_volume(folder / f"{case_id}_brain.nii.gz", Volume(rendered.brain_mask, affine), np.uint8),
        write_volume(folder / f"{case_id}_tissues.nii.gz", Volume(rendered.tissue_labels, affine), np.uint8),
        write_volume(folder / f"{case_id}_lesions.nii.gz", Volume(rendered.lesion_fraction, affine), np.float32),
        write_json(folder / f"{case_id}_pose.json", pose_record(params, rendered.grid)),
    ]


def write_motor_region(root: Path) -> Path:
    """The template-space motor region, so the hand-function model can be re-measured."""
    from autopipe.synth.template import load_template

    template = load_template()
    return write_volume(root / FOLDER / MOTOR_REGION_FILE, Volume(template.motor.astype(np.uint8), template.affine))


def tissue_legend() -> dict[str, int]:
    return dict(TISSUE_LABELS)
