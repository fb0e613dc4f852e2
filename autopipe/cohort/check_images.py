"""Checks on scans and label maps: readable, 3D, finite, not empty, valid labels, one grid per case.

Each function looks at one thing already in memory (an array, a header, a table of spacings) and
returns the Problems it finds; reading the files is the caller's job, so each file is read once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopipe.cohort.image_io import Header, UnreadableImage, Volume, read_volume
from autopipe.cohort.problem import WARNING, Problem, dims, error, grouped, warning

SPACING_RTOL = 1e-3  # relative
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-3  # on direction cosines, about 0.06 degrees
MIN_SPACING_MM, MAX_SPACING_MM = 0.3, 6.0
MAX_ANISOTROPY = 3.0
MAX_SPACING_SPREAD = 2.0  # a case's spacing vs the cohort median, per axis


def read_image(path: Path, case: str, file: str) -> tuple[Volume | None, list[Problem]]:
    """The volume, or None and an error saying why it cannot be read."""
    try:
        return read_volume(path), []
    except UnreadableImage as exc:
        return None, [error(case, file, f"cannot be read ({exc})",
                            "the file is damaged, cut short or not really an image of this type: copy or "
                            "export it again")]


def dimension_problems(shape: tuple[int, ...], case: str, file: str) -> list[Problem]:
    """3D is required: a 2D slice or a 4D series is an error."""
    if len(shape) == 3:
        return []
    fix = ("save each volume as its own file (one channel per file: CASE_0000, CASE_0001, ...)" if len(shape) > 3
           else "export the whole 3D series, not a single slice")
    return [error(case, file, f"is {len(shape)}D (shape {dims(shape)}) but a 3D volume is expected", fix)]


def nonfinite_problems(data: np.ndarray, case: str, file: str, kind: str = "scan") -> list[Problem]:
    """NaN or infinite voxels; `kind` ('scan' or 'label map') words the fix."""
    if not np.issubdtype(data.dtype, np.inexact):
        return []
    nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
    if not (nan or inf):
        return []
    counted = " and ".join(f"{n} voxels are {name}" for n, name in ((nan, "NaN"), (inf, "infinite")) if n)
    source = " from the scanner/DICOM" if kind == "scan" else ""
    return [error(case, file, counted, f"re-export the {kind}{source} without NaN or infinite values")]


def constant_problems(data: np.ndarray, case: str, file: str) -> list[Problem]:
    """A scan without signal: no voxels, no finite voxel, all zeros or one constant value."""
    if np.issubdtype(data.dtype, np.inexact):
        finite = np.isfinite(data)
        data = data if finite.all() else data[finite]
    if data.size == 0:
        return [error(case, file, "holds no (finite) voxel value", "re-export the scan")]
    low, high = data.min(), data.max()
    if low != high:
        return []
    what = "is empty: every voxel is 0" if low == 0 else f"is constant: every voxel is {low:g}"
    return [error(case, file, what, "the export failed or picked the wrong series: re-export the scan")]


def label_values(data: np.ndarray) -> np.ndarray:
    """The distinct finite values of a label map."""
    if np.issubdtype(data.dtype, np.inexact):
        data = data[np.isfinite(data)]
    return np.unique(data)


def label_value_problems(values: np.ndarray, labels: dict[str, int], case: str, file: str) -> list[Problem]:
    """Fractional, negative or undeclared label values."""
    declared = sorted(labels.values())
    fractional = values[values != np.round(values)]
    negative = values[values < 0]
    unknown = [v for v in values if v == np.round(v) and v > 0 and int(v) not in declared]
    problems = []
    if fractional.size:
        problems.append(error(case, file, f"has non-integer label values ({_values(fractional)})",
                              "the label was probably resampled with interpolation: redo it with nearest "
                              "neighbour, or round it to whole numbers"))
    if negative.size:
        problems.append(error(case, file, f"has negative label values ({_values(negative)})",
                              f"label values must be those declared in dataset.json 'labels' ({_values(declared)})"))
    if unknown:
        problems.append(error(case, file, f"has label values {_values(unknown)} that dataset.json 'labels' does "
                                          f"not declare (declared: {_values(declared)})",
                              "declare them in dataset.json 'labels', or relabel the file"))
    return problems


def lesion_problems(values: np.ndarray, case: str, file: str) -> list[Problem]:
    """A label map with only background: usable, but worth a look."""
    if np.any(values > 0):
        return []
    return [warning(case, file, "has no lesion voxels (only background)",
                    "fine if this scan really has no lesion; otherwise the label file is empty by mistake")]


def grid_problems(reference: Header, reference_file: str, other: Header, case: str, file: str,
                  is_label: bool) -> list[Problem]:
    """One error listing how `other`'s grid differs from the reference's: shape, spacing, orientation, origin."""
    if len(reference.shape) != 3 or len(other.shape) != 3:
        return []
    differences = grid_differences(reference, other)
    if not differences:
        return []
    fix = ("the label must be drawn on this case's scan: export it from the same series, or resample it onto "
           "channel 0 with nearest neighbour" if is_label
           else "register and resample this channel onto channel 0 (all channels of a case share one grid)")
    return [error(case, file, f"does not lie on the same grid as {reference_file}: {'; '.join(differences)}", fix)]


def grid_differences(a: Header, b: Header) -> list[str]:
    """What differs between two 3D grids, in words ('shape 20x24x15 here vs 20x24x16'), empty if nothing."""
    out = []
    if a.shape != b.shape:
        out.append(f"shape {dims(b.shape)} here vs {dims(a.shape)}")
    if not np.allclose(a.spacing, b.spacing, rtol=SPACING_RTOL, atol=0):
        out.append(f"spacing {_mm(b.spacing)} here vs {_mm(a.spacing)}")
    if a.axcodes != b.axcodes:
        out.append(f"orientation {b.axcodes} here vs {a.axcodes}")
    else:
        cos_a = a.affine[:3, :3] / np.asarray(a.spacing)
        cos_b = b.affine[:3, :3] / np.asarray(b.spacing)
        if not np.allclose(cos_a, cos_b, rtol=0, atol=DIRECTION_ATOL):
            angle = np.degrees(np.arccos(np.clip(np.sum(cos_a * cos_b, axis=0), -1, 1))).max()
            out.append(f"axes rotated by {angle:.2f} degrees")
    if not np.allclose(a.affine[:3, 3], b.affine[:3, 3], rtol=0, atol=ORIGIN_ATOL_MM):
        out.append(f"origin ({_coords(b.affine[:3, 3])}) mm here vs ({_coords(a.affine[:3, 3])}) mm")
    return out


def spacing_problems(spacings: dict[str, tuple[float, ...]]) -> list[Problem]:
    """Cohort-wide warnings: extreme voxel sizes, strong anisotropy, cases far from the median spacing."""
    cases = sorted(spacings)
    valid = [c for c in cases if min(spacings[c]) > 0]  # a zero spacing is flagged as extreme, not averaged
    extreme = [c for c in cases if min(spacings[c]) < MIN_SPACING_MM or max(spacings[c]) > MAX_SPACING_MM]
    anisotropic = [c for c in valid if max(spacings[c]) > MAX_ANISOTROPY * min(spacings[c])]
    median = np.median(np.array([spacings[c] for c in valid]), axis=0) if valid else None
    far = [c for c in valid if np.any(np.abs(np.log(np.asarray(spacings[c]) / median)) > np.log(MAX_SPACING_SPREAD))]
    problems = []
    if extreme:
        what = f"voxel spacing outside {MIN_SPACING_MM}-{MAX_SPACING_MM} mm (e.g. {_mm(spacings[extreme[0]])})"
        problems.append(grouped(WARNING, extreme, None, what, "check the voxel size in the header (wrong unit? a "
                                                              "scout or localizer series?)"))
    if anisotropic:
        what = f"voxels more than {MAX_ANISOTROPY:g}x longer on one axis (e.g. {_mm(spacings[anisotropic[0]])})"
        problems.append(grouped(WARNING, anisotropic, None, what, "fine for thick-slice scans (the planner handles "
                                                                  "the thick axis apart); check it is the intended "
                                                                  "series"))
    if far:
        what = f"voxel spacing more than {MAX_SPACING_SPREAD:g}x away from the cohort's median {_mm(tuple(median))}"
        problems.append(grouped(WARNING, far, None, what, "every case is resampled to the median spacing; check "
                                                          "these are the intended series (another protocol?)"))
    return problems


def _mm(spacing: tuple[float, ...]) -> str:
    return " x ".join(f"{s:.3g}" for s in spacing) + " mm"


def _coords(values: np.ndarray) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _values(values: object, shown: int = 6) -> str:
    items = [f"{float(v):g}" for v in values]
    return ", ".join(items[:shown]) + (", ..." if len(items) > shown else "")
