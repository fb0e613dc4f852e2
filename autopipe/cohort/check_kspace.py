"""Checks on a case's k-space file (layout in autopipe.cohort.kspace_file) and on its tie to the case's image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopipe.cohort.kspace_file import REQUIRED_ATTRS, KspaceHeader, read_kspace, read_kspace_header
from autopipe.cohort.problem import Problem, dims, error, warning
from autopipe.errors import first_line

MIN_SENSE_CORRELATION = 0.5
REWRITE = "write the file again with autopipe.cohort.kspace_file.write_kspace_file (layout in its docstring)"


def kspace_problems(path: Path, image: np.ndarray | None, case: str, file: str,
                    labels: dict[str, int] | None = None) -> list[Problem]:
    """Every check on one k-space file; `image` is the case's channel-0 voxels (None when unreadable), `labels`
    dataset.json's (the values a 'segmentation' may hold)."""
    if not path.is_file():
        return [error(case, file, "k-space file is missing",
                      "add it, or remove 'kspace' from dataset.json if this cohort has no k-space")]
    try:
        header = read_kspace_header(path)
    except KeyError:
        return [error(case, file, "has no 'kspace' dataset", REWRITE)]
    except Exception as exc:  # h5py raises OSError and others for damaged files
        return [error(case, file, f"cannot be read as HDF5 ({first_line(exc)})",
                      "the file is damaged or not HDF5: copy or export it again")]
    problems = structure_problems(header, case, file)
    if problems:  # the other checks need a sound [slices, coils, H, W] array
        return problems
    axis, indices, problems = slice_attributes(header, case, file)
    if axis is not None and image is not None and image.ndim == 3:
        problems += slice_geometry_problems(header, axis, indices, image.shape, case, file)
    slices_fit_image = axis is not None and image is not None and image.ndim == 3 and not problems
    shapes = dataset_shape_problems(header, case, file)
    if shapes:
        return problems + shapes
    try:
        arrays = read_kspace(path, names=("mask", "reconstruction_sense", "segmentation"))
    except Exception as exc:  # a damaged chunk shows only when read
        return [*problems, error(case, file, f"cannot be read ({first_line(exc)})", "copy or export the file again")]
    problems += nonfinite_kspace_problems(path, header, case, file)
    if "mask" in arrays:
        problems += mask_value_problems(arrays["mask"], case, file)
    if "segmentation" in arrays and labels is not None:
        problems += segmentation_value_problems(arrays["segmentation"], labels, case, file)
    if "reconstruction_sense" in arrays and slices_fit_image:
        problems += sense_problems(arrays["reconstruction_sense"], image, axis, indices, case, file)
    return problems


def nonfinite_kspace_problems(path: Path, header: KspaceHeader, case: str, file: str) -> list[Problem]:
    """NaN or infinite k-space samples, counted slice by slice (a whole file need not fit in memory)."""
    bad = []
    for index in range(header.num_slices):
        samples = read_kspace(path, names=("kspace",), slices=slice(index, index + 1))["kspace"]
        count = int(np.count_nonzero(~np.isfinite(samples)))
        if count:
            bad.append((index, count))
    if not bad:
        return []
    listed = ", ".join(f"slice {i}: {n}" for i, n in bad[:5]) + (", ..." if len(bad) > 5 else "")
    return [error(case, file, f"{sum(n for _, n in bad)} k-space samples are NaN or infinite ({listed})",
                  "re-export the raw data; a reconstruction cannot use NaN samples")]


def structure_problems(header: KspaceHeader, case: str, file: str) -> list[Problem]:
    """'kspace' must be a complex 4D array [slices, coils, H, W]."""
    problems = []
    if len(header.shape) != 4:
        problems.append(error(case, file, f"'kspace' has shape {dims(header.shape)} ({len(header.shape)}D) but must "
                                          "be 4D [slices, coils, H, W]", REWRITE))
    if not np.issubdtype(header.dtype, np.complexfloating):
        problems.append(error(case, file, f"'kspace' holds {header.dtype} values but must be complex",
                              "store real and imaginary parts as one complex64 array; " + REWRITE))
    return problems


def slice_attributes(header: KspaceHeader, case: str,
                     file: str) -> tuple[int | None, np.ndarray, list[Problem]]:
    """slice_axis and slice_indices, checked against the k-space array (axis None when unusable)."""
    missing = [a for a in REQUIRED_ATTRS if a not in header.attrs]
    if missing:
        return None, np.empty(0, int), [error(
            case, file, f"attribute(s) {', '.join(missing)} missing",
            "set slice_axis (0, 1 or 2: the image axis the slices run along) and slice_indices (the voxel "
            "index of each slice along it)")]
    axis, indices = header.attrs["slice_axis"], np.atleast_1d(np.asarray(header.attrs["slice_indices"]))
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        return None, indices, [error(case, file, f"slice_axis is {axis!r} but must be 0, 1 or 2",
                                     "set it to the image axis the k-space slices run along")]
    if not np.issubdtype(indices.dtype, np.number) or np.any(indices != np.round(indices)):
        return None, indices, [error(case, file, "slice_indices are not whole numbers",
                                     "set them to the voxel index of each slice along slice_axis")]
    if len(indices) != header.num_slices:
        return None, indices, [error(case, file, f"slice_indices has {len(indices)} entries but 'kspace' has "
                                                 f"{header.num_slices} slices",
                                     "give one voxel index per k-space slice")]
    return int(axis), indices.astype(int), []


def slice_geometry_problems(header: KspaceHeader, axis: int, indices: np.ndarray, image_shape: tuple[int, ...],
                            case: str, file: str) -> list[Problem]:
    """The slices must exist in the image, and the k-space matrix must be the image's two other axes."""
    problems = []
    depth = image_shape[axis]
    outside = indices[(indices < 0) | (indices >= depth)]
    if outside.size:
        problems.append(error(case, file, f"slice_indices {dims(outside[:6], ', ')} are outside the image, which "
                                          f"has {depth} voxels along axis {axis}",
                              "slice_indices must be voxel indices of the case's channel-0 image along slice_axis"))
    in_plane = tuple(s for i, s in enumerate(image_shape) if i != axis)
    if header.matrix != in_plane:
        problems.append(error(case, file, f"k-space matrix {dims(header.matrix)} does not match the image's axes "
                                          f"other than slice_axis {axis} ({dims(in_plane)})",
                              "slice_axis may be wrong, or the k-space is on another grid than the image: "
                              "k-space slices must be on the image's voxel grid"))
    return problems


def dataset_shape_problems(header: KspaceHeader, case: str, file: str) -> list[Problem]:
    """Shapes of mask, segmentation, reconstruction_sense and sensitivity_map against 'kspace'."""
    slices, _, height, width = header.shape
    expected = {"segmentation": [(slices, height, width)], "reconstruction_sense": [(slices, height, width)],
                "sensitivity_map": [header.shape], "mask": [(height, width), (width,)]}
    problems = []
    for name, shapes in expected.items():
        if name in header.datasets and header.datasets[name][0] not in shapes:
            wanted = " or ".join(f"[{dims(s)}]" for s in shapes)
            problems.append(error(case, file, f"'{name}' has shape [{dims(header.datasets[name][0])}] but "
                                              f"'kspace' [{dims(header.shape)}] needs {wanted}", REWRITE))
    return problems


def mask_value_problems(mask: np.ndarray, case: str, file: str) -> list[Problem]:
    """The sampling mask must be 0/1 and sample something."""
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        return [error(case, file, f"'mask' is not binary (values {dims(values[:6], ', ')})",
                      "store the sampling pattern as 0 (not sampled) / 1 (sampled)")]
    if not values.any():
        return [error(case, file, "'mask' is empty: no k-space point is sampled",
                      "store the acquisition's sampling pattern (1 where sampled)")]
    return []


def segmentation_value_problems(segmentation: np.ndarray, labels: dict[str, int], case: str,
                                file: str) -> list[Problem]:
    """The 'segmentation' slices may hold only the label values dataset.json declares."""
    values = np.unique(segmentation)
    undeclared = values[~np.isin(values, list(labels.values()))]
    if not undeclared.size:
        return []
    declared = ", ".join(f"{name} {value}" for name, value in labels.items())
    return [error(case, file, f"'segmentation' holds values {dims(undeclared[:6], ', ')} that dataset.json does not "
                              f"declare (labels: {declared})",
                  "declare every label in dataset.json's labels, or store the slices with the declared values")]


def sense_problems(sense: np.ndarray, image: np.ndarray, axis: int, indices: np.ndarray, case: str,
                   file: str) -> list[Problem]:
    """Warn when the SENSE reference does not look like the image slices that slice_indices point to."""
    slices = np.moveaxis(np.take(image, indices, axis=axis), axis, 0)
    correlation = normalized_correlation(np.abs(sense), np.abs(slices))
    if correlation is None or correlation >= MIN_SENSE_CORRELATION:
        return []
    return [warning(case, file, f"the SENSE reference hardly resembles the image slices it claims to be "
                                f"(correlation {correlation:.2f} < {MIN_SENSE_CORRELATION})",
                    "check slice_axis / slice_indices and the in-plane orientation (flipped or transposed?)")]


def normalized_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two same-shaped arrays; None when either is constant."""
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return None if norm == 0 else float((a * b).sum() / norm)
