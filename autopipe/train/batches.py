"""Training batches as a pure function of (seed, rank, stream, batch index): exact resume, any number of workers.

Batch k draws everything from np.random.SeedSequence([seed, rank, crc32(stream), k]): which cases, which
samples are forced onto a lesion, where the patches lie, and (through batchgenerators' global random state,
seeded and restored around the call) the augmentation. Any worker, or a restart after a crash, rebuilds the
identical batch k; the loader only decides which k to build.

Patches are read from the preprocessed CASE.h5 files a box at a time (autopipe.preprocess.storage.read_region),
in storage axes, then transposed to network axes: network axis i = storage axis transpose_forward[i].
A 2d configuration samples single slices along network axis 0.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from autopipe.errors import AutopipeError
from autopipe.layout import case_paths
from autopipe.preprocess.storage import read_region
from autopipe.train.augmentation import (
    NNUNET_AUGMENTATION,
    AugmentationSettings,
    augment,
    read_size,
    training_transforms,
)
from autopipe.train.sampling import FOREGROUND_RATE, choose_case_and_center, forced_foreground, sample_patch_box

ENDLESS = 2**62  # __len__: the sampler, not the dataset, decides which batches are built
PREPROCESS_FIX = "run `autopipe preprocess` (again) for this dataset, then train"


def _inspect_case(path: Path, case_id: str) -> tuple[tuple[int, ...], int, np.ndarray]:
    """(storage shape [X, Y, Z], number of channels, lesion voxels [N, 3]) of a preprocessed case."""
    import h5py

    if not path.is_file():
        raise AutopipeError(f"case {case_id} has no preprocessed arrays", where=str(path), fix=PREPROCESS_FIX)
    try:
        with h5py.File(path, "r") as f:
            if "seg" not in f:
                raise AutopipeError(f"case {case_id} has no segmentation: training needs labelled cases",
                                    where=str(path), fix="train on labelled cases only (check the dataset's split)")
            shape, channels = tuple(f["seg"].shape), int(f["image"].shape[0])
            lesions = f["lesion_voxels"][()] if "lesion_voxels" in f else np.zeros((0, 3), np.int32)
    except (OSError, KeyError) as exc:
        raise AutopipeError(f"case {case_id} cannot be read ({exc})", where=str(path), fix=PREPROCESS_FIX) from exc
    return shape, channels, np.asarray(lesions, np.int32).reshape(-1, 3)


def _inverse(permutation: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(permutation))


class PatchBatches(Dataset):
    """Item k: batch k, dict(data float32 [B, C, *patch], target uint8 [B, 1, *patch], cases, forced).

    patch_size and the output are in network axis order; a 2-value patch_size gives 2d slices along network
    axis 0. Sample j of batch k is forced onto a lesion voxel when forced_foreground(k * B + j). With
    augment, a region of read_size(patch_size) centred on the patch is read and rotated, scaled, cropped
    and intensity-augmented; without, the patch itself is read.
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 transpose_forward: Sequence[int], seed: int, augment: bool, rank: int = 0, stream: str = "train",
                 settings: AugmentationSettings = NNUNET_AUGMENTATION,
                 foreground_rate: float = FOREGROUND_RATE) -> None:
        if not case_ids:
            raise AutopipeError("no cases to train on", where=str(folder), fix="check the dataset's split")
        if len(patch_size) not in (2, 3) or batch_size < 1 or sorted(transpose_forward) != [0, 1, 2]:
            raise ValueError(f"patch size {list(patch_size)} (2 or 3 values), batch size {batch_size} (>= 1) and "
                             f"transpose_forward {list(transpose_forward)} (a permutation of 0, 1, 2) expected")
        if seed < 0 or rank < 0:
            raise ValueError(f"seed {seed} and rank {rank} must be >= 0")
        self.folder, self.case_ids = Path(folder), tuple(case_ids)
        self.patch_size, self.batch_size = tuple(int(k) for k in patch_size), int(batch_size)
        self.transpose_forward = tuple(int(a) for a in transpose_forward)
        self.seed, self.rank, self.stream, self.augment = int(seed), int(rank), stream, augment
        self.foreground_rate = foreground_rate
        self.paths = [case_paths(self.folder, case)[0] for case in self.case_ids]
        inspected = [_inspect_case(path, case) for path, case in zip(self.paths, self.case_ids, strict=True)]
        self.shapes = [shape for shape, _, _ in inspected]
        self.lesions = [lesions for _, _, lesions in inspected]
        channels = {case: c for case, (_, c, _) in zip(self.case_ids, inspected, strict=True)}
        if len(set(channels.values())) > 1:
            raise AutopipeError(f"cases differ in their number of channels: {channels}", where=str(self.folder),
                                fix=PREPROCESS_FIX)
        self.read_size = read_size(self.patch_size, settings) if augment else self.patch_size
        self.transforms = training_transforms(self.patch_size, settings) if augment else None

    def __len__(self) -> int:
        return ENDLESS

    def seed_sequence(self, k: int) -> np.random.SeedSequence:
        """The root of all randomness of batch k."""
        return np.random.SeedSequence([self.seed, self.rank, zlib.crc32(self.stream.encode()), k])

    def _read_box(self, shape: tuple[int, ...], center: tuple[int, ...] | None,
                  rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(start, size) of the region to read, in network axes (3 values; 2d: a single slice along axis 0)."""
        net_shape = tuple(shape[a] for a in self.transpose_forward)
        net_center = None if center is None else tuple(center[a] for a in self.transpose_forward)
        slices: tuple[int, ...] = ()
        if len(self.patch_size) == 2:  # a slice along network axis 0 (the lesion's, if centred), then a 2d box
            slices = (int(rng.integers(net_shape[0])) if net_center is None else net_center[0],)
            net_shape, net_center = net_shape[1:], None if net_center is None else net_center[1:]
        start = sample_patch_box(net_shape, self.patch_size, rng, net_center)
        margin = [(r - k) // 2 for r, k in zip(self.read_size, self.patch_size, strict=True)]
        return (*slices, *(s - m for s, m in zip(start, margin, strict=True))), (*(1,) * len(slices), *self.read_size)

    def _read(self, case: int, start: tuple[int, ...], size: tuple[int, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
        """image [C, *size] and seg [*size] of a network-axes box of a case (2d: the slice axis dropped)."""
        inverse = _inverse(self.transpose_forward)
        try:
            region = read_region(self.paths[case], tuple(start[i] for i in inverse), tuple(size[i] for i in inverse))
        except (OSError, KeyError) as exc:
            raise AutopipeError(f"case {self.case_ids[case]} cannot be read for batch {k} ({exc})",
                                where=str(self.paths[case]), fix=PREPROCESS_FIX) from exc
        image = region["image"].transpose(0, *(1 + a for a in self.transpose_forward))
        seg = region["seg"].transpose(self.transpose_forward)
        return (image[:, 0], seg[0]) if len(self.patch_size) == 2 else (image, seg)

    def __getitem__(self, k: int) -> dict:
        if k < 0:
            raise IndexError(f"batch index {k} must be >= 0")
        sampling_seed, augmentation_seed = self.seed_sequence(k).spawn(2)
        rng = np.random.default_rng(sampling_seed)
        images, segs, cases, forced = [], [], [], []
        for j in range(self.batch_size):
            force = forced_foreground(k * self.batch_size + j, self.foreground_rate)
            case, center = choose_case_and_center(self.lesions, force, rng)
            image, seg = self._read(case, *self._read_box(self.shapes[case], center, rng), k)
            images.append(image)
            segs.append(seg[None])
            cases.append(self.case_ids[case])
            forced.append(force)
        data, seg = np.stack(images), np.stack(segs)
        if self.transforms is not None:
            data, seg = augment(data, seg, self.transforms, augmentation_seed)
        return {"data": torch.from_numpy(np.ascontiguousarray(data, np.float32)),
                "target": torch.from_numpy(np.ascontiguousarray(seg, np.uint8)), "cases": cases, "forced": forced}


class _Guarded(Dataset):
    """Returns a user-fixable error as data, so that it reaches the main process whole, not as a traceback text."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> dict:
        try:
            return self.dataset[k]
        except AutopipeError as exc:
            return {"error": (exc.what, exc.where, exc.fix)}


def _init_worker(worker_id: int) -> None:
    """One torch thread per loader worker: the workers are the parallelism."""
    torch.set_num_threads(1)


def batch_loader(dataset: PatchBatches, first: int, count: int, workers: int) -> Iterator[dict]:
    """Batches first .. first + count - 1 of `dataset`, in order; workers = 0 builds them in this process.

    A user-fixable problem in a worker (a case that cannot be read) is raised here as the same AutopipeError;
    a worker killed by the system (usually out of memory) as an AutopipeError that says so.
    """
    if first < 0 or count < 0 or workers < 0:
        raise ValueError(f"first {first}, count {count} and workers {workers} must be >= 0")
    options = {"prefetch_factor": 2, "worker_init_fn": _init_worker} if workers > 0 else {}
    loader = DataLoader(_Guarded(dataset), batch_size=None, sampler=range(first, first + count), num_workers=workers,
                        pin_memory=False, persistent_workers=False, **options)
    try:
        for batch in loader:
            if "error" in batch:
                what, where, fix = batch["error"]
                raise AutopipeError(what, where=where, fix=fix)
            yield batch
    except RuntimeError as exc:
        if "DataLoader worker (pid" not in str(exc):  # torch's words for a worker that died, not one that raised
            raise
        raise AutopipeError(f"a data-loading worker died: {exc}", where=f"{workers} loader workers",
                            fix="probably out of memory: use fewer loader workers or a smaller batch") from exc
