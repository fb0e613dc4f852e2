"""Coefficient maps: back onto the coarse grid, NIfTI in MNI space, weight in a region, and the picture."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from autopipe.evaluate.coefficient_map import cells_to_volume, plot_map, region_weight_fraction, write_map
from autopipe.models.lesion_features import coarse_grid

FINE_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
GRID = coarse_grid((91, 109, 91), FINE_AFFINE, 6.0)  # coarse shape (31, 37, 31)


def test_cells_to_volume_round_trip() -> None:
    cells = np.array([0, 17, 500, GRID.shape[0] * GRID.shape[1] * GRID.shape[2] - 1])
    values = np.array([1.5, -2.0, 0.25, 3.0])
    volume = cells_to_volume(values, cells, GRID)
    assert volume.shape == GRID.shape and volume.dtype == np.float32
    assert np.array_equal(volume.ravel()[cells], values.astype(np.float32))
    assert np.count_nonzero(volume) == 4
    with pytest.raises(ValueError, match="values for"):
        cells_to_volume(values[:3], cells, GRID)
    with pytest.raises(ValueError, match="cell indices"):
        cells_to_volume(values, cells + 1, GRID)


def test_write_map_reads_back_in_mni_space(tmp_path) -> None:
    volume = cells_to_volume(np.array([0.5, -1.25]), np.array([3, 1000]), GRID)
    path = write_map(tmp_path / "maps" / "coefficients.nii.gz", volume, GRID)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["coefficients.nii.gz"]
    image = nib.load(str(path))
    assert np.allclose(image.affine, GRID.affine)
    assert image.get_data_dtype() == np.float32
    assert np.array_equal(np.asanyarray(image.dataobj), volume)
    assert int(image.header["qform_code"]) == 4 and int(image.header["sform_code"]) == 4
    cell = np.unravel_index(1000, GRID.shape)
    assert image.get_fdata()[cell] == -1.25
    # The voxel's world coordinate via the file's affine is the coarse grid's (= its fine block's centre).
    assert np.allclose(nib.affines.apply_affine(image.affine, cell),
                       FINE_AFFINE[:3, :3] @ (3 * np.array(cell) + 1) + FINE_AFFINE[:3, 3])
    with pytest.raises(ValueError, match="coarse grid"):
        write_map(tmp_path / "bad.nii.gz", np.zeros((3, 3, 3)), GRID)


def test_region_weight_fraction_on_hand_cases() -> None:
    region = np.zeros((4, 4, 4))
    region[0, :, :] = 1.0  # a quarter of the grid
    inside = np.zeros((4, 4, 4))
    inside[0, 1, 2], inside[0, 3, 3] = 2.0, -1.0
    result = region_weight_fraction(inside, region)
    assert result == {"positive": 1.0, "absolute": 1.0, "chance": 0.25}
    outside = np.zeros((4, 4, 4))
    outside[2, 2, 2] = 1.0
    assert region_weight_fraction(outside, region)["positive"] == 0.0
    assert region_weight_fraction(outside, region)["absolute"] == 0.0
    mixed = inside + outside - 0.0  # positive: 2 in, 1 out; absolute: 3 in, 1 out
    mixed_result = region_weight_fraction(mixed, region)
    assert mixed_result["positive"] == pytest.approx(2 / 3) and mixed_result["absolute"] == pytest.approx(3 / 4)
    # Chance is the region's mean over brain cells only.
    brain = np.zeros((4, 4, 4))
    brain[0:2] = 0.5
    assert region_weight_fraction(inside, region, brain)["chance"] == pytest.approx(0.5)
    # Partial region fractions weight the share.
    assert region_weight_fraction(outside, region * 0 + 0.3)["positive"] == pytest.approx(0.3)


def test_region_weight_fraction_nan_when_undefined() -> None:
    region = np.ones((2, 2, 2))
    result = region_weight_fraction(np.zeros((2, 2, 2)), region, np.zeros((2, 2, 2)))
    assert all(math.isnan(v) for v in result.values())
    only_negative = region_weight_fraction(-np.ones((2, 2, 2)), region)
    assert math.isnan(only_negative["positive"]) and only_negative["absolute"] == 1.0
    with pytest.raises(ValueError, match="share the coarse grid"):
        region_weight_fraction(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


@pytest.mark.parametrize("region_on", ["coarse", "fine", None])
def test_plot_map_writes_a_png(tmp_path, region_on) -> None:
    volume = np.zeros(GRID.shape, np.float32)
    volume[18, 20, 20], volume[12, 20, 20] = 0.8, -0.3  # left and right of the midline, same coronal row
    region = None
    if region_on == "coarse":
        region = np.zeros(GRID.shape)
        region[16:20, 18:22, 18:23] = 1
    elif region_on == "fine":
        region = np.zeros(GRID.fine_shape, bool)
        region[50:58, 55:65, 55:70] = True
    path = plot_map(tmp_path / "map.png", volume, GRID, "mni152_2009a_sym", "hand function", region)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


def test_plot_map_all_zero_and_bad_region(tmp_path) -> None:
    path = plot_map(tmp_path / "zero.png", np.zeros(GRID.shape), GRID, "mni152_2009a_sym", "empty")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="neither the coarse grid"):
        plot_map(tmp_path / "bad.png", np.zeros(GRID.shape), GRID, "mni152_2009a_sym", "x", np.zeros((3, 3, 3)))
