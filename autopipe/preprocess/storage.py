"""Where a preprocessed case lives, and reading it back a patch at a time.

    preprocessed/DATASET/IDENTIFIER/
        CASE.h5          image float32 [C, X, Y, Z], seg uint8 [X, Y, Z] (if labelled), brain uint8 [X, Y, Z],
                         lesion_voxels int32 [N, 3] (a sample of lesion positions, for oversampling)
        CASE.json        properties (autopipe.preprocess.properties): native geometry, grids, crop box,
                         transforms, statistics, timings
        transforms/      ANTs transform files named after the case
        qc/              CASE.png, views/CASE.npz, montage.png
        report.json      per-case timings, volumes and flags

Arrays are in RAS voxel order of the case's grid (its properties' `grid`). The HDF5 datasets are chunked
(32^3 voxels) and gzip-1 compressed, so a training patch decompresses only the chunks it touches.
CASE.json is written last: a case is finished exactly when its JSON exists and names the current
plan's digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from autopipe.errors import AutopipeError
from autopipe.files import atomic_path, to_plain
from autopipe.layout import case_paths
from autopipe.preprocess.properties import read_properties

FORMAT_VERSION = 1
CHUNK = 32
MAX_LESION_VOXELS = 10_000


def plan_digest(plan: object) -> str:
    """A short hash of the planned values (reasons excluded): preprocessed data is stale when it changes."""
    plain = to_plain(plan)
    if isinstance(plain, dict):
        plain = {k: v for k, v in plain.items() if k != "reasons"}
    text = json.dumps({"format_version": FORMAT_VERSION, "plan": plain}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_case_arrays(path: Path, image: np.ndarray, brain: np.ndarray, seg: np.ndarray | None, seed: int) -> int:
    """Write a case's arrays atomically; returns the number of lesion voxels (all, not just the sample)."""
    import h5py

    if image.ndim != 4 or image.shape[1:] != brain.shape or (seg is not None and seg.shape != brain.shape):
        raise ValueError(f"image [C, X, Y, Z] {image.shape}, brain {brain.shape} and seg "
                         f"{None if seg is None else seg.shape} must share the grid")
    chunks = tuple(min(CHUNK, s) for s in brain.shape)
    options = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    lesion_count = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("image", data=image.astype(np.float32), chunks=(1, *chunks), **options)
        f.create_dataset("brain", data=brain.astype(np.uint8), chunks=chunks, **options)
        if seg is not None:
            f.create_dataset("seg", data=seg.astype(np.uint8), chunks=chunks, **options)
            positions = np.argwhere(seg > 0)
            lesion_count = len(positions)
            if lesion_count > MAX_LESION_VOXELS:
                rng = np.random.default_rng(seed)
                positions = positions[np.sort(rng.choice(lesion_count, MAX_LESION_VOXELS, replace=False))]
            f.create_dataset("lesion_voxels", data=positions.astype(np.int32))
        f.attrs["format_version"] = FORMAT_VERSION
    return lesion_count


def read_case(path: Path, names: tuple[str, ...] = ("image", "seg", "brain")) -> dict[str, np.ndarray]:
    """Whole arrays of a case (those present among `names`)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in names if name in f}


def read_region(path: Path, start: tuple[int, ...], size: tuple[int, ...]) -> dict[str, np.ndarray]:
    """image [C, *size] and seg [*size] (if labelled) of the box at `start`, zero-padded where it leaves the grid.

    Only the chunks the box touches are read and decompressed: what a training data loader needs.
    """
    import h5py

    with h5py.File(path, "r") as f:
        shape = f["brain"].shape
        inside = tuple(slice(max(0, s), max(0, min(n, s + k))) for s, k, n in zip(start, size, shape, strict=True))
        target = tuple(slice(i.start - s, i.start - s + max(0, i.stop - i.start))
                       for i, s in zip(inside, start, strict=True))
        overlaps = all(i.stop > i.start for i in inside)
        out = {"image": np.zeros((f["image"].shape[0], *size), np.float32)}
        if overlaps:
            out["image"][(slice(None), *target)] = f["image"][(slice(None), *inside)]
        if "seg" in f:
            out["seg"] = np.zeros(size, np.uint8)
            if overlaps:
                out["seg"][target] = f["seg"][inside]
    return out


def is_finished(folder: Path, case_id: str, digest: str) -> bool:
    """True when the case's arrays and properties exist and were made with the plan whose digest is `digest`.

    Properties that are damaged or not a case's (another program's, another format's) leave the case unfinished.
    """
    arrays, properties_path = case_paths(folder, case_id)
    try:
        properties = read_properties(properties_path)
    except AutopipeError:
        return False
    return (properties is not None and arrays.is_file() and properties.plan_digest == digest
            and properties.format_version == FORMAT_VERSION)
