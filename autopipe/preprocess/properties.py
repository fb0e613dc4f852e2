"""A preprocessed case's properties (CASE.json), typed, and read and checked here only.

autopipe.preprocess.case writes them last, so a case is finished when they exist and name the current
plan's digest (autopipe.preprocess.storage.is_finished). Everything else reads them through
`read_properties`: a file that is there but is no case's properties is an AutopipeError naming it, never
a KeyError further on. `to_json` is the file's content key for key, as autopipe has always written it,
so preprocessed folders stay valid.

Predictions are made on the training grid (template or native axes at the target spacing, cropped); a
clinician needs them on the scan they came from. The properties hold the native grid as stored in the
file, the training grid and the transform files, so `CaseProperties.to_native` is one resampling through
the inverse transforms, and the result carries the input file's exact affine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from autopipe.anatomy.head_evidence import HeadEvidence
from autopipe.cohort.image_io import Header, Volume
from autopipe.errors import AutopipeError
from autopipe.files import to_plain
from autopipe.plan.configs import SPACES
from autopipe.preprocess.contrast import TISSUES, ChannelContrast
from autopipe.preprocess.geometry import Grid
from autopipe.preprocess.labels import threshold_interpolated
from autopipe.preprocess.plausibility import Finding, Measurements
from autopipe.preprocess.registration import Registration, apply

AXES = "arrays in RAS voxel order of `grid`; `grid` is `full_grid` cropped to `crop_box` ([lo, hi) per axis)"
FIX = "run `autopipe preprocess --force` to preprocess the case again"

T = TypeVar("T")


@dataclass(frozen=True)
class GridRecord:
    """A voxel grid as CASE.json holds it: shape, affine (voxel indices -> RAS+ mm, 6 decimals), spacing (mm)."""

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    spacing: tuple[float, float, float]

    @classmethod
    def of(cls, grid: Grid) -> GridRecord:
        return cls._from_plain(to_plain(grid.to_plain()))

    def as_grid(self) -> Grid:
        return Grid(self.shape, np.asarray(self.affine, float))

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "affine": [list(row) for row in self.affine], "spacing": list(self.spacing)}

    @classmethod
    def from_json(cls, plain: object) -> GridRecord:
        return cls._from_plain(_object(plain))

    @classmethod
    def _from_plain(cls, plain: dict, **more: object) -> GridRecord:
        return cls(_read(plain, "shape", _values(_integer, 3)), _read(plain, "affine", _values(_values(_number, 4), 4)),
                   _read(plain, "spacing", _values(_number, 3)), **more)


@dataclass(frozen=True)
class NativeGrid(GridRecord):
    """Channel 0's grid as stored in its file, with its orientation (nibabel axis codes, e.g. 'LPS')."""

    axcodes: str

    @classmethod
    def of_header(cls, header: Header) -> NativeGrid:
        return cls(tuple(header.shape[:3]), tuple(tuple(row) for row in np.round(header.affine, 6).tolist()),
                   tuple(round(s, 6) for s in header.spacing), header.axcodes)

    def to_json(self) -> dict:
        return {**super().to_json(), "axcodes": self.axcodes}

    @classmethod
    def from_json(cls, plain: object) -> NativeGrid:
        plain = _object(plain)
        return cls._from_plain(plain, axcodes=_read(plain, "axcodes", _text))


@dataclass(frozen=True)
class Source:
    """The raw files the case was made from, as given (paths as text)."""

    images: tuple[str, ...]
    label: str | None

    def to_json(self) -> dict:
        return {"images": list(self.images), "label": self.label}

    @classmethod
    def from_json(cls, plain: object) -> Source:
        plain = _object(plain)
        return cls(_read(plain, "images", _values(_text)), _read(plain, "label", _optional(_text)))


@dataclass(frozen=True)
class Transforms:
    """The case's ANTs transform files, named relative to `folder` (beside the arrays)."""

    folder: str
    to_template: Registration | None  # channel 0 <-> the template; None when the case was not registered
    to_grid: tuple[str, ...]  # channel 0 -> the training grid (empty: the scan's own axes)
    channels_to_channel0: dict[int, Registration]

    def to_json(self) -> dict:
        return {"folder": self.folder, "to_template": None if self.to_template is None else self.to_template.to_plain(),
                "to_grid": list(self.to_grid),
                "channels_to_channel0": {str(k): r.to_plain() for k, r in self.channels_to_channel0.items()}}

    @classmethod
    def from_json(cls, plain: object) -> Transforms:
        plain = _object(plain)
        channels = _read(plain, "channels_to_channel0", _object)
        return cls(_read(plain, "folder", _text), _read(plain, "to_template", _optional(_registration)),
                   _read(plain, "to_grid", _values(_text)),
                   {int(k): _read(channels, k, _registration) for k in channels})


@dataclass(frozen=True)
class Anatomy:
    """What the scan holds (autopipe.anatomy.head_evidence) and what made the brain mask: deepbet or none."""

    evidence: HeadEvidence
    stripped_with: str

    def to_json(self) -> dict:
        return {**self.evidence.to_plain(), "stripped_with": self.stripped_with}

    @classmethod
    def from_json(cls, plain: object) -> Anatomy:
        fields = dict(_object(plain))
        stripped_with = _read(fields, "stripped_with", _text)
        del fields["stripped_with"]
        extent = _read(fields, "extent_mm", _values(_number, 3))
        return cls(HeadEvidence(**{**fields, "extent_mm": extent}), stripped_with)


@dataclass(frozen=True)
class Plausibility:
    """What the checks of autopipe.preprocess.plausibility looked at, and what they found."""

    measurements: Measurements
    findings: tuple[Finding, ...]

    @property
    def failed(self) -> bool:
        return any(f.severity == "fail" for f in self.findings)

    def failed_checks(self) -> dict[str, str]:
        """check name -> message of every failed check."""
        return {f.check: f.message for f in self.findings if f.severity == "fail"}

    def flags(self) -> list[str]:
        """The messages of the findings that only ask for a look."""
        return [f.message for f in self.findings if f.severity == "flag"]

    def to_json(self) -> dict:
        return {"measurements": to_plain(self.measurements), "findings": [f.to_plain() for f in self.findings],
                "failed": self.failed}

    @classmethod
    def from_json(cls, plain: object) -> Plausibility:
        plain = _object(plain)
        measured = dict(_read(plain, "measurements", _object))
        measured["bias_field_range"] = _read(measured, "bias_field_range", _values(_optional(_number)))
        findings = _read(plain, "findings", _values(lambda f: Finding(**_object(f))))
        return cls(Measurements(**measured), findings)


@dataclass(frozen=True)
class ChannelNormalization:
    """How one channel's intensities were mapped (autopipe.preprocess.normalize): the scheme and its statistics."""

    scheme: str
    mean: float
    std: float
    clip_low: float | None = None  # z-score schemes only: the values the image was clipped to
    clip_high: float | None = None

    def to_json(self) -> dict:
        clips = {} if self.scheme == "ct" else {"clip_low": self.clip_low, "clip_high": self.clip_high}
        return {"scheme": self.scheme, "mean": self.mean, "std": self.std, **clips}

    @classmethod
    def from_json(cls, plain: object) -> ChannelNormalization:
        plain = _object(plain)
        scheme = _read(plain, "scheme", _text)
        clips = () if scheme == "ct" else (_read(plain, "clip_low", _optional(_number)),
                                           _read(plain, "clip_high", _optional(_number)))
        return cls(scheme, _read(plain, "mean", _number), _read(plain, "std", _number), *clips)


@dataclass(frozen=True)
class CaseProperties:
    """Everything preprocessing recorded about one case: geometry, transforms, volumes, findings, statistics, timings.

    Volumes are in ml of the native scan. `kspace` is autopipe.preprocess.kspace_prep's summary (None without
    k-space). The file also holds `axes`, the fixed sentence AXES that says how the grids relate.
    """

    format_version: int
    autopipe_version: str
    case: str
    plan_digest: str
    source: Source
    native: NativeGrid
    space: str  # "template" or "native" (autopipe.plan.configs.SPACES)
    template: str | None
    full_grid: GridRecord  # the whole training grid of the space at the target spacing
    crop_box: tuple[tuple[int, int], ...]  # [lo, hi) per axis of full_grid
    grid: GridRecord  # full_grid cropped to crop_box: the arrays' grid
    transforms: Transforms
    arrays: str  # the HDF5 file's name, beside this one
    brain_volume_ml: float
    lesion_volume_ml: float | None  # None: unlabelled
    lesion_voxels_in_grid: int | None
    registration_dice: float | None  # brain mask vs the template's; None when not registered
    anatomy: Anatomy
    plausibility: Plausibility
    normalization: tuple[ChannelNormalization, ...]
    kspace: dict[str, Any] | None
    timings: dict[str, float]  # seconds per step, in the order the steps ran
    seconds: float
    contrast: tuple[ChannelContrast | None, ...] | None = None  # per channel (autopipe.preprocess.contrast); None:
    # not in template space, or preprocessed before autopipe measured it

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space: one of {', '.join(SPACES)} expected, got {self.space!r}")
        if len(self.crop_box) != 3:
            raise ValueError(f"crop_box: 3 [lo, hi) pairs expected, got {len(self.crop_box)}")
        if self.space == "template" and self.transforms.to_template is None:
            raise ValueError("transforms: a template-space case needs to_template")

    def to_native(self, array: np.ndarray, folder: Path, order: int = 3) -> Volume:
        """`array` (on `grid`) on the native grid of channel 0, in the file's own voxel order.

        order 3 for images and probabilities, 1 for masks (then use `mask_to_native`), 0 for label maps.
        `folder` is the preprocessed folder that holds transforms/. Outside the crop the value is 0.
        """
        grid = self.grid.as_grid()
        if tuple(array.shape) != grid.shape:
            raise ValueError(f"array shape {array.shape} does not match the case's grid {grid.shape}")
        native = self.native.as_grid()
        transforms: tuple[str, ...] = ()
        invert = None
        if self.space == "template":
            transforms, invert = self.transforms.to_template.inverse, self.transforms.to_template.invert_inverse
        data = apply(Volume(np.asarray(array, np.float32), grid.affine), native, transforms, order,
                     folder / self.transforms.folder, invert)
        return Volume(data, native.affine)

    def mask_to_native(self, mask: np.ndarray, folder: Path) -> Volume:
        """A 0/1 mask on the training grid as a uint8 0/1 mask on the native grid (linear, threshold 0.5)."""
        volume = self.to_native(np.asarray(mask, np.float32), folder, order=1)
        return volume.with_data(threshold_interpolated(volume.data))

    def to_json(self) -> dict:
        """CASE.json's content."""
        return to_plain({
            "format_version": self.format_version,
            "autopipe_version": self.autopipe_version,
            "case": self.case,
            "plan_digest": self.plan_digest,
            "source": self.source.to_json(),
            "native": self.native.to_json(),
            "space": self.space,
            "template": self.template,
            "axes": AXES,
            "full_grid": self.full_grid.to_json(),
            "crop_box": [list(b) for b in self.crop_box],
            "grid": self.grid.to_json(),
            "transforms": self.transforms.to_json(),
            "arrays": self.arrays,
            "brain_volume_ml": self.brain_volume_ml,
            "lesion_volume_ml": self.lesion_volume_ml,
            "lesion_voxels_in_grid": self.lesion_voxels_in_grid,
            "registration_dice": self.registration_dice,
            "anatomy": self.anatomy.to_json(),
            "plausibility": self.plausibility.to_json(),
            "normalization": [n.to_json() for n in self.normalization],
            "contrast": None if self.contrast is None else [None if c is None else c.to_json() for c in self.contrast],
            "kspace": self.kspace,
            "timings": self.timings,
            "seconds": self.seconds,
        })  # type: ignore[return-value]

    @classmethod
    def from_json(cls, plain: object, where: str = "CASE.json") -> CaseProperties:
        """The properties in CASE.json's content; AutopipeError naming `where` and what is wrong when they are not."""
        try:
            plain = _object(plain)
            optional = {name: _read(plain, name, read) for name, read in _OPTIONAL_FIELDS.items() if name in plain}
            return cls(**{name: _read(plain, name, read) for name, read in _FIELDS.items()}, **optional)
        except ValueError as exc:
            raise AutopipeError(f"not the properties of a preprocessed case: {exc}", where=where, fix=FIX) from None


def read_properties(path: Path) -> CaseProperties | None:
    """A case's properties, or None when the file is missing or cannot be read (an unfinished case).

    AutopipeError, naming the file, when it is there but damaged or not a case's properties.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        plain = json.loads(text)
    except ValueError as exc:
        raise AutopipeError(f"not the properties of a preprocessed case: damaged JSON ({exc})", where=str(path),
                            fix=FIX) from None
    return CaseProperties.from_json(plain, where=str(path))


# --- checked reading of JSON values: ValueError saying what is wrong, where -----------------------------------

def _read(plain: dict, key: str, read: Callable[[object], T]) -> T:
    if key not in plain:
        raise ValueError(f"{key} is missing")
    try:
        return read(plain[key])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{key}: {exc}") from None


def _object(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"an object expected, got {_shown(value)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"text expected, got {_shown(value)}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"an integer expected, got {_shown(value)}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a number expected, got {_shown(value)}")
    return value


def _optional(read: Callable[[object], T]) -> Callable[[object], T | None]:
    return lambda value: None if value is None else read(value)


def _values(read: Callable[[object], T], length: int | None = None) -> Callable[[object], tuple[T, ...]]:
    def values(value: object) -> tuple[T, ...]:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise ValueError(f"a list{'' if length is None else f' of {length}'} expected, got {_shown(value)}")
        return tuple(read(v) for v in value)
    return values


def _registration(value: object) -> Registration:
    plain = _object(value)
    return Registration(*(_read(plain, key, _values(read)) for key, read in
                          (("forward", _text), ("inverse", _text), ("invert_inverse", _boolean))))


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"true or false expected, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


_FIELDS: dict[str, Callable[[object], object]] = {
    "format_version": _integer,
    "autopipe_version": _text,
    "case": _text,
    "plan_digest": _text,
    "source": Source.from_json,
    "native": NativeGrid.from_json,
    "space": _text,
    "template": _optional(_text),
    "full_grid": GridRecord.from_json,
    "crop_box": _values(_values(_integer, 2)),
    "grid": GridRecord.from_json,
    "transforms": Transforms.from_json,
    "arrays": _text,
    "brain_volume_ml": _number,
    "lesion_volume_ml": _optional(_number),
    "lesion_voxels_in_grid": _optional(_integer),
    "registration_dice": _optional(_number),
    "anatomy": Anatomy.from_json,
    "plausibility": Plausibility.from_json,
    "normalization": _values(ChannelNormalization.from_json),
    "kspace": _optional(_object),
    "timings": lambda value: {_text(k): _number(v) for k, v in _object(value).items()},
    "seconds": _number,
}
_OPTIONAL_FIELDS: dict[str, Callable[[object], object]] = {  # absent from CASE.json written by older versions
    "contrast": _optional(_values(_optional(lambda c: ChannelContrast(**{t: _read(_object(c), t, _number)
                                                                          for t in TISSUES})))),
}
