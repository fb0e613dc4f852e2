"""Geometry and random fields: grids in any orientation, thick-slice supersampling, the warp's conventions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from autopipe.synth import geometry
from autopipe.synth.fields import bspline_basis, random_smooth_field
from autopipe.synth.resample import image_points, warp_transform
from autopipe.synth.template import load_template

LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR", "ASL", "LAI"])
def test_output_grid_has_the_orientation_spacing_and_extent_asked_for(axcodes):
    low, high = np.array([-80.0, -110.0, -50.0]), np.array([85.0, 90.0, 100.0])
    spacing = (1.5, 2.0, 3.0)
    grid = geometry.output_grid(low, high, spacing, axcodes)
    assert "".join(nib.aff2axcodes(grid.affine)) == axcodes
    np.testing.assert_allclose(grid.spacing, spacing)
    corners = grid.world(np.array(list(np.ndindex(2, 2, 2))) * (np.array(grid.shape) - 1))
    assert np.all(corners.min(0) <= low + 3.0) and np.all(corners.max(0) >= high - 3.0)
    assert all(n % 2 == 0 for n in grid.shape)


def test_output_grid_rejects_an_invalid_code():
    with pytest.raises(ValueError, match="axis code"):
        geometry.output_grid(np.zeros(3), np.ones(3), (1.0, 1.0, 1.0), "RRS")


def test_thick_slices_are_supersampled_around_each_voxel_centre():
    grid = geometry.output_grid(np.zeros(3), np.array([40.0, 40.0, 60.0]), (1.0, 1.0, 4.0), "LPS")
    fine, factors = geometry.supersampling(grid)
    assert factors == (1, 1, 4) and fine.shape == (grid.shape[0], grid.shape[1], grid.shape[2] * 4)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in fine.shape], indexing="ij"), -1)
    block_centres = np.stack([geometry.average_blocks(fine.world(index)[..., c], factors) for c in range(3)], -1)
    coarse = grid.world(np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1))
    np.testing.assert_allclose(block_centres, coarse, atol=1e-9)


def test_bspline_weights_sum_to_one_and_fields_are_reproducible():
    weights = bspline_basis(np.linspace(1, 8, 50), 10)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    a = random_smooth_field(7, (20, 24, 18), (2.0, 2.0, 2.0), 20.0)
    np.testing.assert_array_equal(a, random_smooth_field(7, (20, 24, 18), (2.0, 2.0, 2.0), 20.0))
    assert np.isclose(np.abs(a).max(), 1.0) and not np.array_equal(a, random_smooth_field(8, a.shape, (2.0,) * 3, 20.0))


def test_itk_warp_follows_the_documented_convention_and_image_points_inverts_it():
    template = load_template()
    rng = np.random.default_rng(5)
    pose = geometry.sample_pose(rng)
    field, field_grid = geometry.displacement_field(geometry.sample_deformation(rng, template), template)
    transform = warp_transform(pose, field, field_grid)
    points = rng.uniform(-40, 40, (10, 3))
    inverse = np.linalg.inv(pose.matrix())
    z = points @ inverse[:3, :3].T + inverse[:3, 3]
    index = np.linalg.solve(field_grid.affine[:3, :3], (z - field_grid.affine[:3, 3]).T)
    u = np.stack([ndimage.map_coordinates(field[..., c], index, order=1) for c in range(3)], -1)
    itk = np.array([LPS @ transform.TransformPoint((LPS @ p).tolist()) for p in points])
    np.testing.assert_allclose(itk, z + u, atol=1e-6)
    np.testing.assert_allclose(image_points(z + u, pose, field, field_grid), points, atol=1e-3)


def test_pose_is_a_rigid_motion():
    matrix = geometry.sample_pose(np.random.default_rng(1)).matrix()
    np.testing.assert_allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(matrix[:3, :3]), 1.0)


def test_drawn_brains_stay_inside_the_volumes_preprocessing_accepts():
    """Volume goes with scale^3; the random field moved it by -3%..+1.3% around that on 150 subjects (1822-1906 ml
    per unit scale^3 against the template's 1883): the extremes must pass the plausibility check."""
    from types import SimpleNamespace

    from autopipe.preprocess.plausibility import MAX_BRAIN_OF_TEMPLATE, MIN_BRAIN_OF_TEMPLATE

    template = SimpleNamespace(brain_centre_mm=(0.0, -18.0, 18.0))
    rng = np.random.default_rng(0)
    scales = [geometry.sample_deformation(rng, template).scale for _ in range(2000)]
    low, high = geometry.SCALE_LIMITS
    assert low <= min(scales) and max(scales) <= high and max(scales) > 1.05  # the clip is reached
    assert high**3 * 1.03 < MAX_BRAIN_OF_TEMPLATE and low**3 * 0.97 > MIN_BRAIN_OF_TEMPLATE
