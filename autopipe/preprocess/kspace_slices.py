"""The 2D slices of prepared k-space that the reconstruction models train and predict on, read one at a time.

Prepared files (autopipe.preprocess.kspace_prep, in preprocessed/DATASET/kspace/CASE.h5) are read one
slice at a time, so a cohort of any size trains in little memory (the order of the slices in an epoch:
autopipe.train.sampling.epoch_order).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autopipe.errors import AutopipeError
from autopipe.layout import kspace_file
from autopipe.preprocess.kspace_prep import kspace_slice_count, read_kspace_slice


@dataclass(frozen=True, order=True)
class SliceRef:
    """Slice `index` of case `case`."""

    case: str
    index: int


def cases_with_kspace(folder: Path, cases: tuple[str, ...] | list[str]) -> list[str]:
    """The cases whose prepared k-space file exists (a cohort may have k-space for only some cases)."""
    return [c for c in cases if kspace_file(folder, c).is_file()]


def slice_classes(path: Path) -> tuple[str, ...]:
    """The class names of a prepared file's segmentation slices (files prepared before classes were stored:
    background and lesion)."""
    import h5py

    with h5py.File(path, "r") as f:
        names = f.attrs.get("class_names")
    return ("background", "lesion") if names is None else tuple(str(n) for n in names)


def slice_refs(folder: Path, cases: list[str], need_segmentation: bool,
               classes: tuple[str, ...] | None = None) -> list[SliceRef]:
    """Every slice of `cases`, checked to hold a fully sampled target (and labels when needed, of the
    `classes` the model segments when given)."""
    import h5py

    refs = []
    for case in cases:
        path = kspace_file(folder, case)
        with h5py.File(path, "r") as f:
            missing = [name for name in ("target", *(("segmentation",) if need_segmentation else ()))
                       if name not in f]
        if need_segmentation and classes is not None and not missing and slice_classes(path) != tuple(classes):
            raise AutopipeError(
                f"case {case}: the prepared k-space slices are labelled {', '.join(slice_classes(path))} but the "
                f"plan's models segment {', '.join(classes)}", where=str(path),
                fix="run `autopipe preprocess --force` after changing the labels, or plan again")
        if missing:
            raise AutopipeError(
                f"case {case}: the prepared k-space file has no {' and no '.join(missing)}", where=str(path),
                fix="training needs fully sampled k-space (or a reference image) and lesion labels for its slices; "
                    "leave this case out of the k-space folder or add them, then run `autopipe preprocess --force`")
        refs.extend(SliceRef(case, i) for i in range(kspace_slice_count(path)))
    return refs


def load_slice(folder: Path, ref: SliceRef, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """One slice as a batch of 1: kspace, maps [1, C, H, W] complex64; mask [1, H, W] float32; target [1, H, W]
    complex64 and segmentation [1, 1, H, W] int64 where the file has them."""
    raw = read_kspace_slice(kspace_file(folder, ref.case), ref.index)
    out = {"kspace": torch.from_numpy(raw["kspace"]), "maps": torch.from_numpy(raw["sensitivity_map"]),
           "mask": torch.from_numpy(raw["mask"].astype(np.float32))}
    if "target" in raw:
        out["target"] = torch.from_numpy(raw["target"])
    if "segmentation" in raw:
        out["segmentation"] = torch.from_numpy(raw["segmentation"].astype(np.int64))[None]
    return {k: v[None].to(device) for k, v in out.items()}
