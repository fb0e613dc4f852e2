"""Batches as a pure function of (seed, rank, stream, k): oversampling, axis order, padding, workers, errors."""

import numpy as np
import pytest
import torch

from autopipe.errors import AutopipeError
from autopipe.preprocess.storage import write_case_arrays
from autopipe.train.batches import PatchBatches, batch_loader

SHAPE = (20, 24, 22)
LESIONS = {"a": [(5, 6, 7), (14, 18, 15)], "b": [(10, 12, 11)], "c": []}  # centres of 2^3 blobs; c has none


def coordinates(shape=SHAPE) -> np.ndarray:
    """1 + 10000 x + 100 y + z at storage voxel (x, y, z): a patch's values tell where it came from."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (1 + 10000 * x + 100 * y + z).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    return make_cases(tmp_path, channels=1)


def make_cases(folder, channels):
    for case, centres in LESIONS.items():
        seg = np.zeros(SHAPE, np.uint8)
        for x, y, z in centres:
            seg[x:x + 2, y:y + 2, z:z + 2] = 1
        image = np.stack([coordinates() * (1 + c) for c in range(channels)])
        write_case_arrays(folder / f"{case}.h5", image, np.ones(SHAPE, np.uint8), seg, seed=0)
    return folder


def batches(folder, patch, transpose=(0, 1, 2), augment=False, batch_size=2, seed=5, **kwargs):
    return PatchBatches(folder, list(LESIONS), patch, batch_size, transpose, seed, augment, **kwargs)


@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1)])
def test_forced_samples_are_centred_on_a_lesion(folder, transpose):
    dataset = batches(folder, (8, 8, 8), transpose)
    forced = 0
    for k in range(60):
        batch = dataset[k]
        for j, is_forced in enumerate(batch["forced"]):
            if is_forced:
                forced += 1
                assert batch["target"][j, 0, 4, 4, 4] == 1 and batch["cases"][j] != "c"
    assert abs(forced / 120 - 1 / 3) <= 0.02


def test_network_axes_follow_transpose_forward(folder):
    patch = batches(folder, (6, 6, 6), (2, 0, 1))[0]["data"][0, 0].numpy()
    assert patch[1, 0, 0] - patch[0, 0, 0] == 1  # network axis 0 = storage z
    assert patch[0, 1, 0] - patch[0, 0, 0] == 10000  # network axis 1 = storage x
    assert patch[0, 0, 1] - patch[0, 0, 0] == 100  # network axis 2 = storage y


def test_2d_samples_are_slices_along_network_axis_0(folder):
    dataset = batches(folder, (6, 6), (2, 0, 1))
    for k in range(10):
        batch = dataset[k]
        assert batch["data"].shape == (2, 1, 6, 6) and batch["target"].shape == (2, 1, 6, 6)
        for j in range(2):
            image = batch["data"][j, 0].numpy()
            assert len(np.unique((image - 1) % 100)) == 1  # one storage z per sample
            assert image[1, 0] - image[0, 0] == 10000 and image[0, 1] - image[0, 0] == 100
            if batch["forced"][j]:
                assert batch["target"][j, 0, 3, 3] == 1


@pytest.mark.parametrize("transpose", [(0, 1, 2), (2, 0, 1)])
def test_a_patch_larger_than_the_case_holds_all_of_it_padded_with_zeros(folder, transpose):
    data = batches(folder, (32, 32, 32), transpose)[3]["data"]
    assert data.shape == (2, 1, 32, 32, 32)
    assert [int((data[j] != 0).sum()) for j in range(2)] == [np.prod(SHAPE)] * 2


@pytest.mark.parametrize("patch", [(16, 16, 16), (16, 24), (32, 32, 32)])
def test_augmented_multichannel_batches_have_the_patch_shape(tmp_path, patch):
    batch = batches(make_cases(tmp_path, channels=2), patch, (2, 0, 1), augment=True, batch_size=3)[1]
    assert batch["data"].shape == (3, 2, *patch) and batch["data"].dtype == torch.float32
    assert batch["target"].shape == (3, 1, *patch) and batch["target"].dtype == torch.uint8
    assert set(batch["target"].unique().tolist()) <= {0, 1} and torch.isfinite(batch["data"]).all()
    assert len(batch["cases"]) == len(batch["forced"]) == 3


def test_a_batch_is_a_pure_function_of_seed_rank_stream_and_index(folder):
    first, second = batches(folder, (8, 8, 8), augment=True), batches(folder, (8, 8, 8), augment=True)
    for k in (0, 7):
        a, b = first[k], second[k]
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["target"], b["target"]) and a["cases"] == b["cases"]
    assert not torch.equal(first[0]["data"], first[1]["data"])
    for other in (batches(folder, (8, 8, 8), augment=True, rank=1),
                  batches(folder, (8, 8, 8), augment=True, stream="validation"),
                  batches(folder, (8, 8, 8), augment=True, seed=6)):
        assert not torch.equal(first[0]["data"], other[0]["data"])


def test_workers_give_the_same_batches_in_order(folder):
    dataset = batches(folder, (8, 8, 8), augment=True)
    in_process = list(batch_loader(dataset, 5, 4, workers=0))
    in_workers = list(batch_loader(dataset, 5, 4, workers=2))
    assert len(in_process) == len(in_workers) == 4
    for k, a, b in zip(range(5, 9), in_process, in_workers, strict=True):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["data"], dataset[k]["data"])
        assert torch.equal(a["target"], b["target"]) and a["cases"] == b["cases"]


def test_a_missing_case_names_the_case_and_the_fix(folder):
    (folder / "b.h5").unlink()
    with pytest.raises(AutopipeError, match="case b .*\n.*autopipe preprocess"):
        batches(folder, (8, 8, 8))


def test_an_unlabelled_case_is_refused(folder):
    write_case_arrays(folder / "b.h5", coordinates()[None], np.ones(SHAPE, np.uint8), None, seed=0)
    with pytest.raises(AutopipeError, match="case b has no segmentation"):
        batches(folder, (8, 8, 8))


def test_a_worker_error_surfaces_as_the_original_error(folder):
    dataset = batches(folder, (8, 8, 8))
    for case in LESIONS:
        (folder / f"{case}.h5").unlink()
    with pytest.raises(AutopipeError, match=r"^\S+\.h5: case \w cannot be read for batch 0") as caught:
        next(iter(batch_loader(dataset, 0, 2, workers=2)))
    assert "autopipe preprocess" in str(caught.value) and "Traceback" not in str(caught.value)
