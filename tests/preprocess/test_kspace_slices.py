"""k-space slices for the slice trainer: seeded epoch order shared by ranks, checked references, loaded slices."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from autopipe.errors import AutopipeError
from autopipe.preprocess.kspace_prep import prepare_kspace_case, read_kspace_slice
from autopipe.preprocess.kspace_slices import SliceRef, cases_with_kspace, load_slice, slice_refs
from autopipe.train.sampling import epoch_order
from tests.tiny_cohort import make_tiny_cohort

SLICES, COILS, MATRIX = 3, 2, (16, 20)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Prepared files: `full` (target + labels), `no_target` and `no_labels` (one dataset deleted)."""
    base = tmp_path_factory.mktemp("kspace")
    root = make_tiny_cohort(base / "Dataset001_Tiny", n_cases=1, shape=(*MATRIX, 8), coils=COILS,
                            kspace_slices=SLICES)
    folder = base / "prepared"
    for case, drop in (("full", None), ("no_target", "target"), ("no_labels", "segmentation")):
        prepare_kspace_case(root / "kspace" / "case_000.h5", folder / f"{case}.h5", coil_method="calibration")
        if drop:
            with h5py.File(folder / f"{case}.h5", "a") as f:
                del f[drop]
    return folder


def test_epoch_order_is_a_seeded_permutation_of_the_slices():
    order = epoch_order(20, epoch=3, seed=7)
    assert sorted(order) == list(range(20))
    assert epoch_order(20, epoch=3, seed=7) == order
    assert epoch_order(20, epoch=4, seed=7) != order
    assert epoch_order(20, epoch=3, seed=8) != order


def test_ranks_share_the_cut_order_equally_without_overlap():
    whole = epoch_order(11, epoch=2, seed=5)
    shares = [epoch_order(11, epoch=2, seed=5, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(set().union(*shares)) == 9
    interleaved = [shares[i % 3][i // 3] for i in range(9)]
    assert interleaved == whole[:9]  # rank r takes every 3rd slice of the order cut to 9
    with pytest.raises(ValueError, match="cannot be shared"):
        epoch_order(2, epoch=0, seed=5, world_size=3)


def test_slice_refs_lists_every_slice_of_every_case(prepared):
    refs = slice_refs(prepared, ["full", "no_labels"], need_segmentation=False)
    assert refs == [SliceRef(c, i) for c in ("full", "no_labels") for i in range(SLICES)]
    assert cases_with_kspace(prepared, ["full", "absent", "no_target"]) == ["full", "no_target"]


@pytest.mark.parametrize(("case", "need_segmentation", "missing"), [
    ("no_target", False, "target"), ("no_target", True, "target"), ("no_labels", True, "segmentation")])
def test_slice_refs_refuses_a_file_without_what_training_needs(prepared, case, need_segmentation, missing):
    with pytest.raises(AutopipeError, match=f"case {case}: .*no {missing}") as info:
        slice_refs(prepared, ["full", case], need_segmentation=need_segmentation)
    assert info.value.where == str(prepared / f"{case}.h5")


def test_load_slice_gives_a_batch_of_one_with_the_file_values(prepared):
    batch = load_slice(prepared, SliceRef("full", 1))
    H, W = MATRIX
    expected = {"kspace": ((1, COILS, H, W), torch.complex64), "maps": ((1, COILS, H, W), torch.complex64),
                "mask": ((1, H, W), torch.float32), "target": ((1, H, W), torch.complex64),
                "segmentation": ((1, 1, H, W), torch.int64)}
    assert {k: (tuple(v.shape), v.dtype) for k, v in batch.items()} == expected
    raw = read_kspace_slice(prepared / "full.h5", 1)
    assert np.array_equal(batch["kspace"][0].numpy(), raw["kspace"])
    assert np.array_equal(batch["maps"][0].numpy(), raw["sensitivity_map"])
    assert np.array_equal(batch["target"][0].numpy(), raw["target"])
    assert np.array_equal(batch["segmentation"][0, 0].numpy(), raw["segmentation"])
    assert np.array_equal(batch["mask"][0].numpy(), raw["mask"].astype(np.float32))
    assert set(batch["mask"].unique().tolist()) == {0.0, 1.0}


def test_load_slice_leaves_out_what_the_file_lacks(prepared):
    assert "target" not in load_slice(prepared, SliceRef("no_target", 0))
    assert "segmentation" not in load_slice(prepared, SliceRef("no_labels", 0))
