"""Per-case k-space preparation for the reconstruction trainer: acquired data, coil maps, target, labels.

One raw k-space file (autopipe.cohort.kspace_file layout) becomes one HDF5 file that a trainer streams a
slice at a time (every dataset is chunked per slice):

    kspace           complex64 [S, C, H, W]  the acquired (undersampled, zero-filled) k-space / scale
    mask             uint8 [H, W]            the sampling pattern, always 2D (1D line masks broadcast along H)
    sensitivity_map  complex64 [S, C, H, W]  coil maps estimated from the acquired calibration region
    target           complex64 [S, H, W]     fully sampled SENSE image / scale (only if there is a reference)
    segmentation     uint8 [S, H, W]         class index per pixel (only if labels are known): with `classes`
                                             the position of the label's value among them (attrs class_names,
                                             lesion_classes), else 1 where a lesion label and 0 elsewhere

Everything the maps and the scale are computed from is available at test time (the undersampled data
alone), so training and inference prepare a case identically. `scale` is the 99th percentile of the
magnitude of the zero-filled SENSE image over the case: the trainer sees images of about unit range,
and multiplies its predictions by `scale` to return to the raw file's units.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autopipe.cohort.kspace_file import read_kspace
from autopipe.cohort.label_classes import lesion_positions
from autopipe.files import atomic_path
from autopipe.mri.coils import estimate_maps_calibration, map_residual
from autopipe.mri.espirit import espirit_maps
from autopipe.mri.fft import ifft2c
from autopipe.mri.masks import calibration_region
from autopipe.mri.operators import sense_combine

SCALE_PERCENTILE = 99.0
"""Percentile of |zero-filled SENSE image| over the case that becomes 1 after scaling."""
COMPRESSION = {"compression": "gzip", "compression_opts": 2, "shuffle": True}
"""Light gzip: noisy complex data compress little, and a trainer decompresses every slice every epoch."""
SLICE_DATASETS = ("kspace", "sensitivity_map", "target", "segmentation")
MAP_RESIDUAL_LIMIT = 0.3
"""Share of the calibration data that ESPIRiT maps may leave unexplained before the calibration-image maps
are used instead (good maps leave a few percent; see autopipe.mri.coils.map_residual)."""
"""Datasets with one entry per slice; `mask` is shared by all slices."""


log = logging.getLogger(__name__)

COIL_METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "espirit": espirit_maps,
    "calibration": estimate_maps_calibration,
}
"""Coil map estimators: (k-space [..., C, H, W], calibration_size) -> maps [..., C, H, W]."""


def prepare_kspace_case(source: Path, destination: Path, *, label: np.ndarray | None = None,
                        lesion_labels: tuple[int, ...] = (1,), classes: dict[str, int] | None = None,
                        coil_method: str = "espirit", calibration_size: int | None = None) -> dict:
    """Write the trainer's file for one raw k-space file (never modified); returns a summary.

    Fully sampled files (attr fully_sampled) are undersampled here by their mask and give the target
    sum_c conj(S_c) F^-1 y_c with the estimated maps; already undersampled files have a target only if
    they carry `reconstruction_sense`. `label` (the case's label volume on channel 0's voxel grid) gives
    the segmentation slices when the file has none. `classes` (name -> label value, background first) are
    the classes the multitask models segment; values not among them become background. Without it the
    slices are binary: lesion (`lesion_labels`) or not. `calibration_size` defaults to the file's attribute.
    Summary: slices, coils, matrix, scale, seconds {coil_maps, total}, has_target, has_segmentation,
    calibration_fully_sampled (False: the mask has holes in the calibration square, so maps are poor).
    """
    start = time.perf_counter()
    source, destination = Path(source), Path(destination)
    if coil_method not in COIL_METHODS:
        raise ValueError(f"unknown coil_method {coil_method!r}; choices: {', '.join(sorted(COIL_METHODS))}")
    if destination.resolve() == source.resolve():
        raise ValueError(f"destination {destination} is the raw file itself; raw data are never overwritten")
    raw = read_kspace(source, names=("kspace", "mask", "reconstruction_sense", "segmentation"))
    attrs = raw["attrs"]
    kspace = raw["kspace"]
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ValueError(f"{source.name}: 'kspace' must be complex [slices, coils, H, W], got {kspace.dtype} "
                         f"{kspace.shape}")
    S, C, H, W = kspace.shape
    fully_sampled = _fully_sampled(kspace, raw.get("mask"), attrs)
    mask = _mask_2d(raw.get("mask"), kspace, fully_sampled, source.name)
    if calibration_size is None:
        calibration_size = int(_attr(attrs, "calibration_size", source.name))
    acquired = (kspace * mask).astype(np.complex64)

    maps_start = time.perf_counter()
    maps = np.asarray(COIL_METHODS[coil_method](acquired, calibration_size)).astype(np.complex64)
    residual = map_residual(acquired, maps, calibration_size)
    if coil_method == "espirit" and residual > MAP_RESIDUAL_LIMIT:
        fallback = np.asarray(estimate_maps_calibration(acquired, calibration_size)).astype(np.complex64)
        log.warning("warning: %s: ESPIRiT coil maps leave %.0f%% of the calibration data unexplained (limit %.0f%%); "
                    "using calibration-image maps instead", source.name, 100 * residual, 100 * MAP_RESIDUAL_LIMIT)
        maps, coil_method = fallback, "calibration"
        residual = map_residual(acquired, maps, calibration_size)
    maps_seconds = time.perf_counter() - maps_start
    zero_filled = sense_combine(ifft2c(acquired), maps)
    scale = float(np.percentile(np.abs(zero_filled), SCALE_PERCENTILE))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"{source.name}: the zero-filled image is empty (99th percentile {scale}); no signal to "
                         f"normalize, or the coil maps are zero everywhere")

    if fully_sampled:
        target, target_source = sense_combine(ifft2c(kspace), maps), "sense_combine"
    elif "reconstruction_sense" in raw:
        target, target_source = raw["reconstruction_sense"], "reconstruction_sense"
    else:
        target, target_source = None, "none"
    classes = classes or {"background": 0, "lesion": lesion_labels[0]}
    class_values = _class_values(classes, lesion_labels)
    segmentation = _segmentation(raw.get("segmentation"), label, attrs, (S, H, W), class_values, source.name)

    datasets = {"kspace": acquired / np.float32(scale), "sensitivity_map": maps,
                "target": None if target is None else np.asarray(target, np.complex64) / np.float32(scale),
                "segmentation": segmentation}
    out_attrs = {
        "scale": scale, "coil_method": coil_method, "coil_map_residual": residual,
        "calibration_size": calibration_size,
        "calibration_fully_sampled": bool(mask[calibration_region((H, W), calibration_size)].all()),
        "source_fully_sampled": fully_sampled, "target_source": target_source, "source": source.name,
        "class_names": list(classes), "lesion_classes": np.asarray(lesion_positions(classes, lesion_labels), np.int64),
        **{key: attrs[key] for key in ("acceleration", "effective_acceleration", "mask_type", "slice_axis")
           if key in attrs},
    }
    if "slice_indices" in attrs:
        out_attrs["slice_indices"] = np.asarray(attrs["slice_indices"], np.int64)
    _write(destination, mask, datasets, out_attrs)
    return {"slices": S, "coils": C, "matrix": [H, W], "scale": scale, "coil_method": coil_method,
            "coil_map_residual": round(residual, 4),
            "seconds": {"coil_maps": round(maps_seconds, 3), "total": round(time.perf_counter() - start, 3)},
            "has_target": target is not None, "has_segmentation": segmentation is not None,
            "calibration_fully_sampled": out_attrs["calibration_fully_sampled"]}


def read_kspace_slice(path: Path, index: int) -> dict[str, np.ndarray]:
    """One slice of a prepared file: kspace [C, H, W], mask [H, W], sensitivity_map [C, H, W], and target
    [H, W] / segmentation [H, W] where the file has them. Reads only that slice's chunks."""
    import h5py

    index = operator.index(index)
    with h5py.File(path, "r") as f:
        count = f["kspace"].shape[0]
        if not -count <= index < count:
            raise IndexError(f"slice {index} is out of range for {Path(path).name}, which has {count} slices")
        out = {name: f[name][index] for name in SLICE_DATASETS if name in f}
        out["mask"] = f["mask"][()]
    return out


def kspace_slice_count(path: Path) -> int:
    """Number of slices in a prepared file, read from its header."""
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["kspace"].shape[0])


def _fully_sampled(kspace: np.ndarray, mask: np.ndarray | None, attrs: dict) -> bool:
    """The file's `fully_sampled` attribute, or, without it, whether any sample lies outside the mask."""
    if "fully_sampled" in attrs:
        return bool(attrs["fully_sampled"])
    if mask is None:
        return True
    return bool(np.any(kspace[..., np.broadcast_to(mask == 0, kspace.shape[-2:])]))


def _mask_2d(mask: np.ndarray | None, kspace: np.ndarray, fully_sampled: bool, name: str) -> np.ndarray:
    """The sampling pattern as uint8 [H, W]: a [W] line mask broadcast along H; without a mask, everything
    (fully sampled data) or the samples that are not zero in any slice or coil (undersampled data)."""
    H, W = kspace.shape[-2:]
    if mask is None:
        sampled = np.ones((H, W), bool) if fully_sampled else np.any(kspace != 0, axis=(0, 1))
        return sampled.astype(np.uint8)
    if mask.shape not in ((H, W), (W,)):
        raise ValueError(f"{name}: 'mask' has shape {mask.shape} but the {H}x{W} k-space needs [H, W] or [W]")
    return np.ascontiguousarray(np.broadcast_to(mask != 0, (H, W))).astype(np.uint8)


def _class_values(classes: dict[str, int], lesion_labels: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per class index, the label values it takes: the binary lesion class takes every lesion label."""
    values = list(classes.values())
    if len(values) == 2 and values[1] in lesion_labels:
        return [(values[0],), tuple(lesion_labels)]
    return [(v,) for v in values]


def _segmentation(stored: np.ndarray | None, label: np.ndarray | None, attrs: dict, shape: tuple[int, int, int],
                  class_values: list[tuple[int, ...]], name: str) -> np.ndarray | None:
    """Class-index slices uint8 [S, H, W] (index i where the label takes a value of class i, values of no
    class become 0): the file's segmentation, else the label volume's slices."""
    if stored is None and label is not None:
        label = np.asarray(label)
        axis, indices = int(_attr(attrs, "slice_axis", name)), np.atleast_1d(_attr(attrs, "slice_indices", name))
        if label.ndim != 3:
            raise ValueError(f"{name}: label must be a 3D volume, got shape {label.shape}")
        stored = np.stack([label.take(int(i), axis=axis) for i in indices])
    if stored is None:
        return None
    if stored.shape != shape:
        raise ValueError(f"{name}: segmentation slices have shape {stored.shape} but the k-space needs {shape}")
    out = np.zeros(shape, np.uint8)
    for index, values in enumerate(class_values[1:], start=1):
        out[np.isin(stored, values)] = index
    return out


def _attr(attrs: dict, key: str, name: str) -> object:
    if key not in attrs:
        raise ValueError(f"{name}: attribute {key!r} is missing")
    return attrs[key]


def _write(destination: Path, mask: np.ndarray, datasets: dict[str, np.ndarray | None], attrs: dict) -> None:
    """The prepared file, written atomically, every per-slice dataset chunked one slice per chunk."""
    import h5py

    with atomic_path(destination) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("mask", data=mask, **COMPRESSION)
        for name, array in datasets.items():
            if array is not None:
                f.create_dataset(name, data=array, chunks=(1, *array.shape[1:]), **COMPRESSION)
        for key, value in attrs.items():
            f.attrs[key] = value
