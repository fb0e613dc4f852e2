"""Lesion maps in matrix form: coarse-grid geometry, pooling, summaries and feature vectors on hand-made cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autopipe.models.lesion_features import (
    SUMMARY_FEATURES,
    CoarseGrid,
    brain_cells,
    cell_fraction,
    coarse_grid,
    feature_vector,
    lesion_summaries,
    on_full_grid,
    pool_ml,
    smooth_cells,
    template_brain_on_grid,
)
from tests.case_properties import case_properties

FINE_SHAPE = (10, 11, 12)  # not divisible by 3 along the first two axes
FINE_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
VOXEL_ML = 0.008  # 2 mm cubed


def world(affine: np.ndarray, index) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(index, float) + affine[:3, 3]


def test_coarse_grid_geometry_on_a_hand_case() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    assert grid.factor == (3, 3, 3)
    assert grid.shape == (4, 4, 4)  # ceil(10/3), ceil(11/3), ceil(12/3)
    assert np.allclose(np.diag(grid.affine)[:3], 6.0)
    assert np.allclose(grid.affine[:3, 3], [-88, -124, -70])  # origin shifted by +2 mm (fine index 1)
    # The world centre of each cell's fine block is the coarse voxel's world coordinate.
    for cell in [(0, 0, 0), (1, 2, 3), (3, 3, 3)]:
        block = [np.arange(3 * c, 3 * c + 3) for c in cell]
        centre = np.mean([world(FINE_AFFINE, (i, j, k)) for i in block[0] for j in block[1] for k in block[2]],
                         axis=0)
        assert np.allclose(world(grid.affine, cell), centre)
    assert grid.fine_voxel_ml == pytest.approx(VOXEL_ML)
    assert grid.cell_mm == pytest.approx((6.0, 6.0, 6.0))


def test_coarse_grid_factor_per_axis_and_at_least_one() -> None:
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    assert coarse_grid((8, 8, 8), affine, 6.0).factor == (6, 3, 2)
    assert coarse_grid((8, 8, 8), affine, 0.4).factor == (1, 1, 1)
    assert coarse_grid((8, 8, 8), affine, 5.0).factor == (5, 3, 2)  # 2.5 rounds up
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])  # an LAS grid: spacing from column norms
    grid = coarse_grid((9, 9, 9), flipped, 6.0)
    assert grid.factor == (3, 3, 3) and grid.affine[0, 0] == -6.0 and grid.affine[0, 3] == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="grid_mm"):
        coarse_grid((8, 8, 8), affine, 0)


def test_lesion_voxel_lands_in_the_cell_around_its_world_point() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    point = np.array([-76.0, -110.0, -56.0])  # fine index (7, 8, 8)
    index = np.linalg.solve(FINE_AFFINE[:3, :3], point - FINE_AFFINE[:3, 3]).round().astype(int)
    mask = np.zeros(FINE_SHAPE, bool)
    mask[tuple(index)] = True
    pooled = pool_ml(mask, grid)
    cell = np.unravel_index(int(np.argmax(pooled)), grid.shape)
    assert cell == (2, 2, 2)
    assert np.all(np.abs(world(grid.affine, cell) - point) <= 3.0)
    assert pooled.sum() == pytest.approx(VOXEL_ML)


def test_pool_ml_sums_to_total_volume_with_a_ragged_border() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    rng = np.random.default_rng(0)
    mask = rng.random(FINE_SHAPE) < 0.3
    pooled = pool_ml(mask, grid)
    assert pooled.shape == grid.shape and pooled.dtype == np.float64
    assert pooled.sum() == pytest.approx(mask.sum() * VOXEL_ML)
    corner = np.zeros(FINE_SHAPE, np.uint8)
    corner[9, 10, 11] = 1  # last voxel: alone in the padded border cell (3, 3, 3)
    assert pool_ml(corner, grid)[3, 3, 3] == pytest.approx(VOXEL_ML)
    with pytest.raises(ValueError, match="fine grid"):
        pool_ml(np.zeros((9, 9, 9)), grid)


def test_cell_fraction_counts_padding_as_outside() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    fraction = cell_fraction(np.ones(FINE_SHAPE, bool), grid)
    assert fraction[0, 0, 0] == 1.0
    assert fraction[3, 0, 0] == pytest.approx(1 / 3)  # fine x 9 only of 9..11
    assert fraction[3, 3, 0] == pytest.approx(2 / 9)  # x 9 of 9..11, y 9..10 of 9..11
    region = np.zeros(FINE_SHAPE, bool)
    region[0:3, 0:3, 0] = True
    assert cell_fraction(region, grid)[0, 0, 0] == pytest.approx(1 / 3)


def test_brain_cells_are_sorted_flat_indices_above_the_fraction() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    brain = np.zeros(FINE_SHAPE, bool)
    brain[3:6, 3:6, 3:6] = True  # all of cell (1, 1, 1)
    brain[9, 0, 0] = True  # one voxel of cell (3, 0, 0), which has 9 real voxels of 27
    cells = brain_cells(brain, grid)
    expected = sorted([np.ravel_multi_index((1, 1, 1), grid.shape), np.ravel_multi_index((3, 0, 0), grid.shape)])
    assert cells.tolist() == expected
    assert brain_cells(brain, grid, min_fraction=0.5).tolist() == [np.ravel_multi_index((1, 1, 1), grid.shape)]


def test_coarse_grid_json_round_trip() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    back = CoarseGrid.from_json(json.loads(json.dumps(grid.to_json())))
    assert back == grid and back.factor == grid.factor and np.array_equal(back.affine, grid.affine)
    assert back != coarse_grid(FINE_SHAPE, FINE_AFFINE, 4.0)


def test_on_full_grid_places_the_crop() -> None:
    properties = case_properties(full_shape=(6, 7, 8), crop_box=((1, 4), (2, 7), (0, 8)))  # grid 3 x 5 x 8
    array = np.arange(3 * 5 * 8, dtype=np.uint8).reshape(3, 5, 8) + 1
    full = on_full_grid(array, properties)
    assert full.shape == (6, 7, 8) and full.dtype == np.uint8
    assert np.array_equal(full[1:4, 2:7, :], array)
    assert full.sum() == array.sum()
    channels = on_full_grid(np.stack([array, array]), properties)  # leading axes are kept
    assert channels.shape == (2, 6, 7, 8)
    with pytest.raises(ValueError, match="crop box"):
        on_full_grid(array[:, :4], properties)


def test_lesion_summaries_count_26_connected_lesions() -> None:
    mask = np.zeros((10, 10, 10), bool)
    mask[0:2, 0:2, 0:2] = True  # 8 voxels
    mask[6:8, 6:8, 6] = True  # 4 voxels, far away
    assert lesion_summaries(mask, VOXEL_ML) == pytest.approx(
        {"lesion_load_ml": 12 * VOXEL_ML, "lesion_count": 2.0, "largest_lesion_ml": 8 * VOXEL_ML})
    diagonal = np.zeros((4, 4, 4), bool)
    diagonal[1, 1, 1] = diagonal[2, 2, 2] = True  # touching by a corner only: one lesion
    assert lesion_summaries(diagonal, 1.0) == {"lesion_load_ml": 2.0, "lesion_count": 1.0, "largest_lesion_ml": 2.0}
    assert lesion_summaries(np.zeros((3, 3, 3)), 1.0) == {"lesion_load_ml": 0.0, "lesion_count": 0.0,
                                                        "largest_lesion_ml": 0.0}


def test_feature_vector_names_and_order() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    mask = np.zeros(FINE_SHAPE, np.uint8)
    mask[3:6, 3:6, 3:6] = 1  # fills cell (1, 1, 1): 27 voxels
    mask[0, 0, 0] = 1  # a second lesion in cell 0
    cells = np.array([0, 5, int(np.ravel_multi_index((1, 1, 1), grid.shape))])
    vector, names = feature_vector(mask, grid, cells, ["lesion_count", "lesion_map", "largest_lesion", "lesion_load"])
    assert names == ["lesion_count", "cell_0", "cell_5", "cell_21", "largest_lesion_ml", "lesion_load_ml"]
    assert vector.dtype == np.float64
    assert vector == pytest.approx([2, VOXEL_ML, 0, 27 * VOXEL_ML, 27 * VOXEL_ML, 28 * VOXEL_ML])
    only_map, map_names = feature_vector(mask, grid, cells, ["lesion_map"])
    assert map_names == ["cell_0", "cell_5", "cell_21"] and only_map == pytest.approx(vector[1:4])
    assert set(SUMMARY_FEATURES.values()) <= set(names)


def test_feature_vector_errors() -> None:
    grid = coarse_grid(FINE_SHAPE, FINE_AFFINE, 6.0)
    mask = np.zeros(FINE_SHAPE, bool)
    with pytest.raises(ValueError, match="unknown lesion feature"):
        feature_vector(mask, grid, np.array([0]), ["lesion_map", "lesion_shape"])
    with pytest.raises(ValueError, match="repeat"):
        feature_vector(mask, grid, np.array([0]), ["lesion_load", "lesion_load"])
    with pytest.raises(ValueError, match="not on the template grid"):
        feature_vector(np.zeros((10, 11, 11), bool), grid, np.array([0]), ["lesion_map"])


def test_template_brain_on_the_real_2mm_template_grid() -> None:
    from autopipe.templates import load_template

    _, mask = load_template("mni152_2009a_sym", 2)
    brain = template_brain_on_grid("mni152_2009a_sym", mask.shape, mask.affine)
    assert brain.shape == mask.shape and brain.dtype == np.uint8
    assert np.array_equal(brain, mask.data)  # the template's own grid maps voxel to voxel
    assert 1.2 < brain.sum() * VOXEL_ML / 1000 < 2.2  # litres
    grid = coarse_grid(mask.shape, mask.affine, 6.0)
    cells = brain_cells(brain, grid)
    assert 0 < cells.size < np.prod(grid.shape)
    assert cell_fraction(brain, grid).ravel()[cells].sum() * 27 == brain.sum()
    # A grid shifted by 1 mm and cropped still gets a plausible brain (nearest by world coordinates).
    shifted = mask.affine.copy()
    shifted[:3, 3] += 1.0
    moved = template_brain_on_grid("mni152_2009a_sym", (90, 110, 90), shifted)
    assert 1.2 < moved.sum() * VOXEL_ML / 1000 < 2.2


def test_smooth_cells_is_the_identity_at_zero_and_keeps_an_interior_cells_mass() -> None:
    grid = coarse_grid((30, 30, 30), FINE_AFFINE, 6.0)  # 10 cells of 6 mm per axis
    cells = np.arange(int(np.prod(grid.shape)))
    x = np.zeros((2, cells.size))
    x[0, np.ravel_multi_index((5, 5, 5), grid.shape)] = 0.3
    assert np.array_equal(smooth_cells(x, grid, cells, 0.0), x)
    blurred = smooth_cells(x, grid, cells, 6.0)  # one cell of sigma
    assert blurred[0].sum() == pytest.approx(0.3, rel=1e-3) and blurred[0].max() < 0.3 / 8
    centre = blurred[0].reshape(grid.shape)
    # the hand value: a 1D Gaussian of sigma 1 cell, sampled, gives the centre weight 0.3989 per axis
    assert centre[5, 5, 5] == pytest.approx(0.3 * 0.39894 ** 3, rel=2e-3)
    assert centre[4, 5, 5] == pytest.approx(centre[6, 5, 5]) == pytest.approx(centre[5, 5, 5] * np.exp(-0.5), rel=2e-3)
    assert not blurred[1].any()


def test_smooth_cells_is_symmetric_so_weights_map_back_to_raw_cells() -> None:
    """x_blur . w == x . blur(w) for cells restricted to a brain-like subset: the fitted model keeps mL units."""
    grid = coarse_grid((24, 27, 30), FINE_AFFINE, 6.0)
    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(int(np.prod(grid.shape)), size=300, replace=False))
    x, w = rng.random((4, cells.size)), rng.normal(size=cells.size)
    assert smooth_cells(x, grid, cells, 9.0) @ w == pytest.approx(x @ smooth_cells(w, grid, cells, 9.0))
    assert smooth_cells(w, grid, cells, 9.0).shape == w.shape
    with pytest.raises(ValueError, match="one column per cell"):
        smooth_cells(x[:, :-1], grid, cells, 6.0)
    with pytest.raises(ValueError, match="sigma_mm"):
        smooth_cells(x, grid, cells, -1.0)
