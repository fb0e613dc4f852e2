"""Prediction on k-space files: the slab's geometry and which trained approach predicts."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from autopipe.errors import AutopipeError
from autopipe.files import write_json
from autopipe.paths import Workspace
from autopipe.predict.kspace_cases import choose_approach, slab_affine, slab_volume

# LPS-like axes rotated 30 degrees about the third one, anisotropic voxels, an offset origin.
_c, _s = np.cos(np.pi / 6), np.sin(np.pi / 6)
AFFINE = np.array([[-0.9 * _c, 1.1 * _s, 0.0, 90.5],
                   [-0.9 * _s, -1.1 * _c, 0.3, 120.25],
                   [0.0, 0.0, 3.0, -40.0],
                   [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("indices", [[5, 6, 7], [4, 6, 8], [9]])
def test_a_slab_voxel_lies_where_the_image_voxel_of_its_slice_lies(axis, indices):
    slab = slab_affine(AFFINE, axis, np.array(indices))
    for voxel in itertools.product(range(3), range(len(indices)), range(2)):
        voxel = list(voxel)
        voxel[axis], voxel[1] = voxel[1], voxel[axis]  # the slab index runs along `axis`
        image_voxel = list(voxel)
        image_voxel[axis] = indices[voxel[axis]]
        np.testing.assert_allclose(slab @ [*voxel, 1], AFFINE @ [*image_voxel, 1], atol=1e-9)
    assert np.array_equal(np.delete(slab, [axis, 3], axis=1), np.delete(AFFINE, [axis, 3], axis=1))


def test_slab_affine_by_hand():
    """Indices 4, 6, 8 along axis 2: origin moves 4 slice steps, the slice axis doubles."""
    slab = slab_affine(AFFINE, 2, np.array([4, 6, 8]))
    expected = AFFINE.copy()
    expected[:3, 3] = AFFINE[:3, 3] + 4 * AFFINE[:3, 2]  # (90.5, 121.45, -28.0)
    expected[:3, 2] = 2 * AFFINE[:3, 2]
    np.testing.assert_allclose(slab, expected)
    np.testing.assert_allclose(slab[:3, 3], [90.5, 121.45, -28.0])
    np.testing.assert_allclose(AFFINE, np.array(AFFINE))  # the input is not modified


@pytest.mark.parametrize("indices", [[5, 6, 8], [3, 2, 1, 4]])
def test_uneven_slice_indices_are_refused(indices):
    with pytest.raises(ValueError, match="not evenly spaced"):
        slab_affine(AFFINE, 1, np.array(indices))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_volume_puts_the_slices_along_the_given_axis(axis):
    slices = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    volume = slab_volume(slices, axis)
    assert volume.shape == tuple(np.insert([4, 5], axis, 3))
    for s in range(3):
        assert np.array_equal(np.take(volume, s, axis=axis), slices[s])


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(raw=tmp_path / "raw", plans=tmp_path / "plans", preprocessed=tmp_path / "pre",
                     results=tmp_path / "results")


PLANS = SimpleNamespace(dataset="Dataset001_Tiny")


def write_summary(workspace: Workspace, methods: dict) -> Path:
    return write_json(workspace.results / PLANS.dataset / "reconstruction" / "comparison" / "summary.json",
                      {"folds": ["0"], "methods": methods})


def lesion_dice(mean: float) -> dict:
    return {"subjects": 2, "ssim": {"mean": 0.9, "std": 0.01}, "per_lesion_dice": {"mean": mean, "std": 0.1}}


def test_the_best_trained_approach_by_per_lesion_dice_is_chosen(workspace):
    write_summary(workspace, {"cs": {"subjects": 2, "ssim": {"mean": 0.99, "std": 0.0}},
                              "pretrained": lesion_dice(0.40), "sequential": lesion_dice(0.90),
                              "end_to_end": lesion_dice(0.62), "mtlrs": lesion_dice(0.55)})
    assert choose_approach(PLANS, workspace, None, ["pretrained", "end_to_end", "mtlrs"]) == "end_to_end"
    assert choose_approach(PLANS, workspace, None, ["sequential", "mtlrs"]) == "sequential"
    assert choose_approach(PLANS, workspace, "pretrained", ["pretrained", "mtlrs"]) == "pretrained"


def test_without_scores_mtlrs_then_any_trained_approach_is_chosen(workspace):
    assert choose_approach(PLANS, workspace, None, ["end_to_end", "mtlrs"]) == "mtlrs"
    assert choose_approach(PLANS, workspace, None, ["sequential", "end_to_end"]) == "sequential"
    write_summary(workspace, {"mtlrs": lesion_dice(0.3)})  # scores only an approach that is not trained
    assert choose_approach(PLANS, workspace, None, ["joint", "end_to_end"]) == "joint"


def test_an_untrained_approach_is_refused(workspace):
    with pytest.raises(AutopipeError, match="approach joint has no trained fold") as info:
        choose_approach(PLANS, workspace, "joint", ["pretrained", "mtlrs"])
    assert "pretrained, mtlrs" in info.value.fix
    with pytest.raises(AutopipeError, match="no reconstruction approach is trained"):
        choose_approach(PLANS, workspace, None, [])
