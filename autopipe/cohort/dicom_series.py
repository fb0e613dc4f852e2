"""DICOM headers into series: read every file's header once, group the images by series, check each series'
geometry and compute its voxel-to-world affine.

Only headers are read here (pydicom, stop_before_pixels), so a tree of thousands of files is scanned quickly;
the voxels are read later, and only for the series chosen (autopipe.cohort.import_dicom). The geometry
functions are pure: they take the headers' ImagePositionPatient / ImageOrientationPatient / PixelSpacing and
say what is wrong with a stack of slices (missing slices, mixed orientations or sizes, uneven spacing), or
give its affine in NIfTI's RAS+ convention.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autopipe.errors import first_line
from autopipe.progress import track

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-4  # direction cosines that differ by more are another orientation
POSITION_TOLERANCE = 0.01  # mm: positions closer than this along the normal are the same slice

# What a DICOM file is, for the importer.
IMAGE = "image"  # a classic single-frame image with patient geometry: a slice of a series
SEGMENTATION = "segmentation"  # a DICOM SEG object: a candidate lesion mask
MULTIFRAME = "multiframe"  # an enhanced (multi-frame) image: not supported yet
NOT_IMAGE = "not an image"  # structured report, RT plan, presentation state, ...
NO_GEOMETRY = "no geometry"  # an image without position/orientation (secondary capture, screenshot)


@dataclass(frozen=True)
class DicomFile:
    """What the importer needs from one DICOM file's header."""

    path: str  # relative to the source root, with '/' separators
    kind: str  # IMAGE, SEGMENTATION, MULTIFRAME, NOT_IMAGE or NO_GEOMETRY
    sop_class: str = ""
    sop_instance_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    series_uid: str = ""
    series_number: int | None = None
    texts: dict[str, str] = field(default_factory=dict)  # SeriesDescription, ProtocolName, SequenceName
    image_type: tuple[str, ...] = ()
    rows: int = 0
    columns: int = 0
    position: tuple[float, ...] | None = None  # ImagePositionPatient (LPS mm)
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient: row then column direction (LPS)
    pixel_spacing: tuple[float, ...] | None = None  # (between rows, between columns) in mm
    instance_number: int | None = None
    frame_of_reference: str = ""
    referenced_series: tuple[str, ...] = ()  # a segmentation's ReferencedSeriesSequence

    @property
    def description(self) -> str:
        return self.texts.get("SeriesDescription") or self.texts.get("ProtocolName") or ""


@dataclass
class Series:
    """The files of one SeriesInstanceUID (any kind), in the order found."""

    uid: str
    files: list[DicomFile]

    @property
    def first(self) -> DicomFile:
        return self.files[0]

    def label(self) -> str:
        """'series 3 'AX FLAIR'': how the series is named to the user (no patient identifiers)."""
        number = "?" if self.first.series_number is None else self.first.series_number
        return f"series {number} {self.first.description!r}" if self.first.description else f"series {number}"


@dataclass
class HeaderScan:
    """Every header read from a source tree: the DICOM files, and the files that are not DICOM or unreadable."""

    files: list[DicomFile] = field(default_factory=list)
    not_dicom: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why


def source_files(source: Path) -> list[Path]:
    """Every regular file under `source` (any nesting, any name), sorted; hidden files and folders too."""
    found = []
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        found += [Path(folder) / name for name in sorted(names) if (Path(folder) / name).is_file()]
    return found


def scan_headers(source: Path, progress: bool = True) -> HeaderScan:
    """Read the header of every file under `source` (never its pixels, never writing)."""
    scan = HeaderScan()
    paths = source_files(source)
    for path in track(paths, len(paths), "reading DICOM headers", enabled=progress):
        relative = path.relative_to(source).as_posix()
        try:
            header = read_header(path, relative)
        except Exception as exc:  # pydicom raises many types for damaged files
            scan.unreadable[relative] = first_line(exc)
            continue
        if header is None:
            scan.not_dicom.append(relative)
        else:
            scan.files.append(header)
    return scan


def read_header(path: Path, relative: str) -> DicomFile | None:
    """The header of one file as a DicomFile; None when the file is not DICOM (no 'DICM' preamble)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():  # odd values in real files warn per file; what matters is checked here
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            return None
        return header_of(ds, relative)


def header_of(ds: object, relative: str) -> DicomFile:
    """A pydicom dataset's header as a DicomFile (pure: no file access)."""
    get = ds.get  # type: ignore[attr-defined]
    sop_class = str(get("SOPClassUID", "") or "")
    frames = _int(get("NumberOfFrames"))
    common = {
        "path": relative, "sop_class": sop_class, "sop_instance_uid": str(get("SOPInstanceUID", "") or ""),
        "patient_id": str(get("PatientID", "") or ""), "patient_name": str(get("PatientName", "") or ""),
        "study_uid": str(get("StudyInstanceUID", "") or ""), "study_date": str(get("StudyDate", "") or ""),
        "study_time": str(get("StudyTime", "") or ""), "accession": str(get("AccessionNumber", "") or ""),
        "series_uid": str(get("SeriesInstanceUID", "") or ""), "series_number": _int(get("SeriesNumber")),
        "texts": {key: str(get(key, "") or "") for key in ("SeriesDescription", "ProtocolName", "SequenceName")},
        "image_type": tuple(str(v).upper() for v in _values(get("ImageType"))),
        "rows": _int(get("Rows")) or 0, "columns": _int(get("Columns")) or 0,
        "instance_number": _int(get("InstanceNumber")),
        "frame_of_reference": str(get("FrameOfReferenceUID", "") or ""),
    }
    if sop_class == SEGMENTATION_STORAGE:
        referenced = tuple(str(item.get("SeriesInstanceUID", "")) for item in _values(get("ReferencedSeriesSequence")))
        return DicomFile(kind=SEGMENTATION, referenced_series=referenced, **common)
    if sop_class in ENHANCED_SOP_CLASSES or (frames or 1) > 1:
        return DicomFile(kind=MULTIFRAME, **common)
    if not common["rows"] or not common["columns"]:
        return DicomFile(kind=NOT_IMAGE, **common)
    position = _floats(get("ImagePositionPatient"), 3)
    orientation = _floats(get("ImageOrientationPatient"), 6)
    spacing = _floats(get("PixelSpacing"), 2)
    if position is None or orientation is None or spacing is None:
        return DicomFile(kind=NO_GEOMETRY, **common)
    return DicomFile(kind=IMAGE, position=position, orientation=orientation, pixel_spacing=spacing, **common)


def group_series(files: Iterable[DicomFile]) -> list[Series]:
    """The files grouped by SeriesInstanceUID, in the order their series were first found."""
    groups: dict[str, list[DicomFile]] = {}
    for f in files:
        groups.setdefault(f.series_uid or f"(no series uid) {f.path}", []).append(f)
    return [Series(uid, members) for uid, members in groups.items()]


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """The unit normal of a slice (row direction x column direction, LPS)."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def sort_slices(files: list[DicomFile]) -> list[DicomFile]:
    """The slices in order along their normal (ascending), InstanceNumber breaking ties."""
    normal = slice_normal(files[0].orientation)  # type: ignore[arg-type]
    return sorted(files, key=lambda f: (float(np.dot(f.position, normal)), f.instance_number or 0))  # type: ignore


def series_problem(files: list[DicomFile]) -> str | None:
    """Why these image files do not make one regular 3D stack, or None when they do.

    Checked in order: one slice only (2D), mixed orientations, mixed sizes or pixel spacings, several images
    at one position (echoes, time points), missing slices (a gap along the normal, or InstanceNumbers that
    skip), uneven spacing, and slices that do not line up along the normal (gantry tilt).
    """
    if len(files) < 2:
        return "a single image (2D), not a 3D series: only 3D volumes are imported"
    orientations = np.array([f.orientation for f in files], float)
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        return (f"mixed orientations: its images have {len(_distinct(orientations, ORIENTATION_TOLERANCE))} "
                "different ImageOrientationPatient values (a localizer, or several stacks in one series)")
    sizes = sorted({(f.rows, f.columns) for f in files})
    if len(sizes) > 1:
        return f"mixed image sizes ({', '.join(f'{r}x{c}' for r, c in sizes)})"
    spacings = np.array([f.pixel_spacing for f in files], float)
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        return "mixed pixel spacings"
    ordered = sort_slices(files)
    normal = slice_normal(files[0].orientation)  # type: ignore[arg-type]
    heights = np.array([np.dot(f.position, normal) for f in ordered])
    steps = np.diff(heights)
    if steps.min() < POSITION_TOLERANCE:
        return (f"several images at the same position ({len(files)} images at "
                f"{len(_distinct(heights[:, None], POSITION_TOLERANCE))} positions: echoes, time points or "
                "repeats in one series)")
    step = float(np.median(steps))
    if steps.max() > 1.5 * step:
        where = int(np.argmax(steps))
        missing = round(steps.max() / step) - 1
        return (f"incomplete: about {missing} slice(s) missing between slices {where + 1} and {where + 2} "
                f"({steps.max():.2f} mm apart instead of {step:.2f} mm)")
    numbers = sorted(f.instance_number for f in files if f.instance_number is not None)
    if len(numbers) == len(files) and len(set(numbers)) == len(numbers) and numbers[-1] - numbers[0] + 1 > len(numbers):
        gap = next(a for a, b in zip(numbers, numbers[1:], strict=False) if b - a > 1)
        return (f"incomplete: InstanceNumber jumps from {gap} to {numbers[numbers.index(gap) + 1]} "
                f"({numbers[-1] - numbers[0] + 1 - len(numbers)} image(s) missing)")
    if np.abs(steps - step).max() > max(POSITION_TOLERANCE, 0.01 * step):
        return f"uneven slice spacing ({steps.min():.3f} to {steps.max():.3f} mm)"
    positions = np.array([f.position for f in ordered], float)
    offsets = positions - positions[0]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    if np.linalg.norm(in_plane, axis=1).max() > 0.05:
        return "its slices do not line up along the slice normal (gantry tilt or shifted stacks): not supported"
    return None


def series_affine(ordered: list[DicomFile]) -> np.ndarray:
    """The RAS+ voxel-to-world affine of a regular stack of slices sorted by `sort_slices`.

    Voxel (i, j, k) is column i, row j of slice k: i runs along the row direction (ImageOrientationPatient[:3])
    with the spacing between columns (PixelSpacing[1]), j along the column direction with PixelSpacing[0], and
    k from the first slice's position to the last's. DICOM is LPS, so x and y change sign.
    """
    first = ordered[0]
    row = np.asarray(first.orientation[:3], float)  # type: ignore[index]
    col = np.asarray(first.orientation[3:6], float)  # type: ignore[index]
    row_spacing, col_spacing = first.pixel_spacing  # type: ignore[misc]
    origin = np.asarray(first.position, float)
    if len(ordered) > 1:
        step = (np.asarray(ordered[-1].position, float) - origin) / (len(ordered) - 1)
    else:
        step = slice_normal(first.orientation)  # type: ignore[arg-type]
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * col_spacing, col * row_spacing, step, origin
    ras = np.eye(4)
    ras[:3, :] = LPS_TO_RAS @ lps[:3, :]
    return ras


def slice_thickness(affine: np.ndarray) -> float:
    """The spacing between slices (mm) of an affine from `series_affine`."""
    return float(np.linalg.norm(affine[:3, 2]))


def _distinct(values: np.ndarray, tolerance: float) -> list[np.ndarray]:
    distinct: list[np.ndarray] = []
    for v in values:
        if not any(np.abs(v - d).max() <= tolerance for d in distinct):
            distinct.append(v)
    return distinct


def _values(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)  # type: ignore[call-overload]
    except TypeError:
        return [value]


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in _values(value))
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def _int(value: object) -> int | None:
    try:
        return None if value is None or value == "" else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
