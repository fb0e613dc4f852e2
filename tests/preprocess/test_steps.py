"""Unit tests of the preprocessing steps on small hand-made arrays, each checked against a hand-computed result.

tests/preprocess/test_pipeline.py runs the whole pipeline on a synthetic cohort; here every step is exercised
alone: geometry (RAS/LPS, grids, crops), resampling, registration, normalization, labels, storage, the report,
the runner's helpers and the "none" skull strip.
"""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from autopipe import executor
from autopipe.cohort.image_io import Volume, bounding_box, to_ras
from autopipe.files import remove_stale_temporaries
from autopipe.layout import data_identifier
from autopipe.plan.configs import PreprocessingPlan
from autopipe.preprocess import plausibility, runner
from autopipe.preprocess.acceptance import failed_checks
from autopipe.preprocess.geometry import (
    Grid,
    from_ants,
    resampled_grid,
    to_ants,
)
from autopipe.preprocess.labels import binarize, threshold_interpolated
from autopipe.preprocess.normalize import ct_normalize, zscore
from autopipe.preprocess.properties import Plausibility
from autopipe.preprocess.registration import Registration, apply, register
from autopipe.preprocess.report import build_report, case_flags, format_table
from autopipe.preprocess.skull_strip import brain_mask
from autopipe.preprocess.storage import (
    FORMAT_VERSION,
    MAX_LESION_VOXELS,
    is_finished,
    plan_digest,
    read_case,
    read_region,
    write_case_arrays,
)
from tests.case_properties import case_properties


def world(affine: np.ndarray, index) -> np.ndarray:
    """RAS mm of voxel `index` (or of [N, 3] indices)."""
    index = np.asarray(index, float)
    return index @ affine[:3, :3].T + affine[:3, 3]


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = math.radians(degrees_z), math.radians(degrees_x)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rz @ rx


def oblique_affine(spacing=(1.0, 2.0, 3.0), origin=(-30.0, 12.5, 7.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation(20, 10) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def centred_affine(shape: tuple[int, ...], spacing: float) -> np.ndarray:
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -spacing * (np.array(shape) - 1) / 2
    return affine


def blob(shape=(24, 24, 24), spacing=2.0, sigma=2.0) -> Volume:
    """A smooth, non-negative ellipsoid with an off-centre bright spot."""
    affine = centred_affine(shape, spacing)
    x, y, z = (c.reshape(shape) for c in world(affine, np.indices(shape).reshape(3, -1).T).T)
    image = ((x / 16) ** 2 + (y / 13) ** 2 + (z / 10) ** 2 <= 1).astype(np.float32)
    image += 2.0 * ((x - 6) ** 2 + (y - 4) ** 2 + (z + 2) ** 2 <= 16)
    return Volume(ndimage.gaussian_filter(image, sigma).astype(np.float32), affine)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("columns", [
    [[-2, 0, 0], [0, -2, 0], [0, 0, 2]],  # LPS
    [[0, 0, 2], [-2, 0, 0], [0, -2, 0]],  # PIR
    [[0, 0, -3], [0, 1.5, 0], [2, 0, 0]],  # SAL, anisotropic
])
def test_to_ras_reorders_losslessly_and_keeps_every_voxels_world_position(columns):
    affine = np.eye(4)
    affine[:3, :3] = columns
    affine[:3, 3] = (10.0, -20.0, 5.0)
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # every value marks one voxel
    volume = Volume(data, affine)
    assert volume.axcodes != "RAS"
    ras = to_ras(volume)
    assert ras.axcodes == "RAS"
    assert np.array_equal(np.sort(ras.data.ravel()), data.ravel())  # a permutation: nothing interpolated
    assert sorted(ras.shape) == sorted(data.shape)
    old_index = np.argwhere(np.ones(data.shape, bool))
    new_index = np.empty_like(old_index)
    new_index[ras.data.ravel().astype(int)] = np.argwhere(np.ones(ras.shape, bool))
    old_index = old_index[data.ravel().astype(int)]
    assert np.allclose(world(ras.affine, new_index), world(affine, old_index))
    assert np.allclose(sorted(ras.spacing), sorted(volume.spacing))


def test_to_ras_returns_a_ras_volume_unchanged():
    volume = Volume(np.zeros((2, 3, 4), np.float32), np.diag([1.0, 2.0, 3.0, 1.0]))
    assert to_ras(volume) is volume


@pytest.mark.parametrize("affine", [oblique_affine(), np.diag([-1.0, -1.5, 2.0, 1.0])])
def test_ants_round_trip_keeps_voxels_and_affine(affine):
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    back = from_ants(to_ants(Volume(data, affine)))
    assert np.array_equal(back.data, data)
    assert np.allclose(back.affine, affine, atol=1e-6)


def test_ants_physical_point_is_the_ras_point_with_x_and_y_negated():
    import ants

    affine = oblique_affine()
    image = to_ants(Volume(np.zeros((5, 6, 7), np.float32), affine))
    for index in [(0, 0, 0), (4, 0, 0), (1, 5, 2), (4, 5, 6)]:
        lps = np.asarray(ants.transform_index_to_physical_point(image, index), float)
        ras = world(affine, index)
        assert np.allclose(lps, ras * (-1, -1, 1), atol=1e-6), index


def outer_corners(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """World positions of the outer corners of the first and the last voxel."""
    return world(grid.affine, (-0.5, -0.5, -0.5)), world(grid.affine, np.array(grid.shape) - 0.5)


@pytest.mark.parametrize(("spacing", "shape", "target", "expected_shape"), [
    ((2.0, 2.0, 2.0), (30, 31, 29), (3.0, 3.0, 3.0), (20, 21, 19)),  # 60, 62, 58 mm
    ((1.0, 1.0, 1.0), (10, 12, 23), (1.0, 1.0, 5.0), (10, 12, 5)),  # 23 mm -> 5 slices of 5 mm
])
def test_resampled_grid_keeps_the_field_of_view(spacing, shape, target, expected_shape):
    grid = Grid(shape, oblique_affine(spacing))
    new = resampled_grid(grid, target)
    assert new.shape == expected_shape
    assert np.allclose(new.spacing, target)
    directions = grid.affine[:3, :3] / np.array(spacing)
    assert np.allclose(new.affine[:3, :3] / np.array(target), directions)  # axes point the same way
    first, last = outer_corners(grid)
    new_first, new_last = outer_corners(new)
    assert np.allclose(new_first, first)
    # the far corner moves along each axis by less than half a new voxel (rounding of the voxel count)
    shift = np.linalg.solve(directions, new_last - last)
    assert np.all(np.abs(shift) <= np.array(target) / 2 + 1e-9), shift


def test_grid_crop_moves_the_origin_by_lo_voxels_and_keeps_spacing():
    grid = Grid((10, 12, 14), oblique_affine())
    box = ((2, 7), (0, 12), (3, 5))
    cropped = grid.crop(box)
    assert cropped.shape == (5, 12, 2)
    assert np.allclose(cropped.affine[:3, :3], grid.affine[:3, :3])
    assert np.allclose(cropped.affine[:3, 3], world(grid.affine, (2, 0, 3)))
    # any voxel of the crop sits where the same voxel of the full grid sits
    assert np.allclose(world(cropped.affine, (4, 11, 1)), world(grid.affine, (6, 11, 4)))
    assert Grid.from_plain(cropped.to_plain()).shape == cropped.shape


def test_bounding_box_widens_by_margin_and_clips_at_the_borders():
    mask = np.zeros((10, 8, 6), bool)
    mask[1, 3, 5] = mask[4, 5, 2] = True
    assert bounding_box(mask) == ((1, 5), (3, 6), (2, 6))
    assert bounding_box(mask, margin=2) == ((0, 7), (1, 8), (0, 6))
    assert bounding_box(np.zeros((3, 3, 3), bool), margin=1) is None


# ---------------------------------------------------------------- resampling


@pytest.mark.parametrize(("order", "tolerance"), [(1, 1e-6), (3, 1e-5)])
def test_apply_onto_its_own_grid_without_transforms_is_the_identity(order, tolerance):
    volume = blob()
    # the same check on an LPS-stored copy exercises the RAS/LPS bridge
    lps = Volume(np.ascontiguousarray(volume.data[::-1, ::-1]), volume.affine @ np.array(
        [[-1, 0, 0, volume.shape[0] - 1], [0, -1, 0, volume.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]]))
    assert lps.axcodes == "LPS"
    for v in (volume, lps):
        out = apply(v, Grid.of(v), (), order)
        assert out.dtype == np.float32 and out.shape == v.shape
        assert np.abs(out - v.data).max() < tolerance * v.data.max()
    # and from the LPS copy onto the RAS grid: the same voxels, reordered
    assert np.abs(apply(lps, Grid.of(volume), (), 1) - volume.data).max() < 1e-5


def test_down_and_up_sampling_keeps_the_mean_inside_the_object():
    volume = blob(sigma=1.0)
    fine = Grid.of(volume)
    coarse = resampled_grid(fine, (4.0, 4.0, 4.0))
    assert coarse.shape == (12, 12, 12)
    small = apply(volume, coarse, (), 3)
    back = apply(Volume(small, coarse.affine), fine, (), 3)
    inside = volume.data > 0.5
    assert math.isclose(back[inside].mean(), volume.data[inside].mean(), rel_tol=0.03)
    assert corr(back, volume.data) > 0.99


def test_resampled_binary_mask_stays_binary_and_creates_no_new_component():
    shape = (30, 30, 30)
    mask = np.zeros(shape, np.uint8)
    mask[5:12, 6:14, 8:15] = 1  # a box
    mask[20:22, 20:22, 20:22] = 1  # a small lesion
    mask[15, 4, 25] = 1  # a single voxel: may vanish, must not spread
    mask[24:28, 8, 10:20] = 1  # a thin sheet
    volume = Volume(mask, oblique_affine((1.0, 1.0, 1.0)))
    coarse = resampled_grid(Grid.of(volume), (1.7, 1.3, 2.2))
    small = threshold_interpolated(apply(volume.with_data(mask.astype(np.float32)), coarse, (), 1))
    assert small.dtype == np.uint8 and set(np.unique(small)) <= {0, 1}
    back = threshold_interpolated(apply(Volume(small.astype(np.float32), coarse.affine), Grid.of(volume), (), 1))
    assert set(np.unique(back)) <= {0, 1} and back.any()
    labels, count = ndimage.label(back)
    for component in range(1, count + 1):
        assert mask[labels == component].any(), f"component {component} appeared from nothing"


# ---------------------------------------------------------------- registration


def phantom(shift_mm=(0.0, 0.0, 0.0), n=40, spacing=2.0) -> Volume:
    """A blurred ellipsoid with a bright off-centre ball and an elongated dark structure, moved by `shift_mm` (RAS)."""
    affine = centred_affine((n,) * 3, spacing)
    x, y, z = (c.reshape((n,) * 3) for c in (world(affine, np.indices((n,) * 3).reshape(3, -1).T) - shift_mm).T)
    image = ((x / 28) ** 2 + (y / 22) ** 2 + (z / 18) ** 2 <= 1).astype(np.float32)
    image += 1.5 * ((x - 10) ** 2 + (y - 6) ** 2 + (z + 4) ** 2 <= 36)
    image -= 0.7 * ((x + 12) ** 2 / 64 + (y + 5) ** 2 / 16 + z**2 / 9 <= 1)
    return Volume(ndimage.gaussian_filter(image, 1.0).astype(np.float32), affine)


@pytest.fixture(scope="module")
def translated():
    """(fixed, moving shifted 4 mm to the right, two registrations with one seed)."""
    fixed, moving = phantom(), phantom((4.0, 0.0, 0.0))
    first = register(fixed, moving, "Rigid", 3.0, seed=7)
    second = register(fixed, moving, "Rigid", 3.0, seed=7)
    yield fixed, moving, first, second
    for registration in (first, second):  # ANTs writes its transforms to the system's temporary folder
        for path in set(registration.forward + registration.inverse):
            Path(path).unlink(missing_ok=True)


def test_rigid_registration_recovers_a_translation(translated):
    import ants

    fixed, moving, registration, _ = translated
    assert len(registration.forward) == 1 and registration.forward[0].endswith(".mat")
    assert registration.invert_inverse == (True,)
    mapped = apply(moving, Grid.of(fixed), registration.forward, 1)
    before, after = corr(fixed.data, moving.data), corr(fixed.data, mapped)
    assert after > before + 0.03 and after > 0.995, (before, after)
    parameters = ants.read_transform(registration.forward[0]).parameters
    # fixed -> moving in LPS: the moving head sits 4 mm to the right (RAS +x), i.e. LPS -x
    assert np.allclose(parameters[9:], (-4.0, 0.0, 0.0), atol=0.5), parameters
    assert np.allclose(np.reshape(parameters[:9], (3, 3)), np.eye(3), atol=0.08), parameters


def test_registration_with_one_seed_is_repeatable(translated):
    import ants

    _, _, first, second = translated
    assert first.forward != second.forward  # two files, so the equality below is not trivial
    a, b = (ants.read_transform(r.forward[0]) for r in (first, second))
    assert np.array_equal(a.parameters, b.parameters)
    assert np.array_equal(a.fixed_parameters, b.fixed_parameters)


def test_registration_rejects_an_unknown_transform():
    volume = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="Rigid, Affine, SyN"):
        register(volume, volume, "Elastic", 2.0, seed=1)


def test_relocated_registration_applies_like_the_original(translated, tmp_path):
    fixed, moving, fixture_registration, _ = translated
    scratch = tmp_path / "ants"
    scratch.mkdir()
    original = Path(shutil.copy(fixture_registration.forward[0], scratch / "x0GenericAffine.mat"))
    registration = Registration((str(original),), (str(original),), (True,))
    grid = Grid.of(fixed)
    before = apply(moving, grid, registration.forward, 1)
    content = original.read_bytes()
    kept = registration.relocated(tmp_path / "transforms", "PVL_001")
    assert kept.forward == kept.inverse == ("PVL_001_affine.mat",)
    assert kept.invert_inverse == registration.invert_inverse
    path = tmp_path / "transforms" / "PVL_001_affine.mat"
    assert path.read_bytes() == content
    assert not original.exists()  # moved: ANTs' temporary files do not pile up
    assert not list((tmp_path / "transforms").glob(".tmp_*"))
    assert np.array_equal(apply(moving, grid, kept.forward, 1, tmp_path / "transforms"), before)
    # fixed -> moving through the inverse list and back again
    inverse = apply(fixed, Grid.of(moving), kept.inverse, 1, tmp_path / "transforms", kept.invert_inverse)
    assert corr(inverse, moving.data) > corr(fixed.data, moving.data)


def test_relocated_names_warps_by_role_and_plain_form_round_trips(tmp_path):
    source = tmp_path / "ants"
    source.mkdir()
    files = {name: source / name for name in ("x0GenericAffine.mat", "x1Warp.nii.gz", "x1InverseWarp.nii.gz")}
    for name, path in files.items():
        path.write_bytes(name.encode())
    syn = Registration(forward=(str(files["x1Warp.nii.gz"]), str(files["x0GenericAffine.mat"])),
                       inverse=(str(files["x0GenericAffine.mat"]), str(files["x1InverseWarp.nii.gz"])),
                       invert_inverse=(True, False))
    kept = syn.relocated(tmp_path / "kept", "case")
    assert kept.forward == ("case_warp.nii.gz", "case_affine.mat")
    assert kept.inverse == ("case_affine.mat", "case_inverse_warp.nii.gz")
    assert (tmp_path / "kept" / "case_inverse_warp.nii.gz").read_bytes() == b"x1InverseWarp.nii.gz"
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [
        "case_affine.mat", "case_inverse_warp.nii.gz", "case_warp.nii.gz"]
    plain = json.loads(json.dumps(kept.to_plain()))
    assert Registration.from_plain(plain) == kept


# ---------------------------------------------------------------- normalization


def ball(shape=(24, 24, 24), radius=9.0) -> np.ndarray:
    centre = (np.array(shape) - 1) / 2
    return (np.linalg.norm(np.indices(shape) - centre[:, None, None, None], axis=0) <= radius).astype(np.uint8)


def test_zscore_is_standard_inside_the_mask_and_zero_outside():
    rng = np.random.default_rng(1)
    image = (300 + 40 * rng.normal(size=(24, 24, 24))).astype(np.float32)
    mask = ball()
    out, stats = zscore(image, mask)
    assert out.dtype == np.float32
    assert abs(out[mask > 0].mean()) < 1e-4 and abs(out[mask > 0].std() - 1) < 1e-4
    assert np.all(out[mask == 0] == 0)
    assert math.isclose(stats["mean"], 300, rel_tol=0.01) and math.isclose(stats["std"], 40, rel_tol=0.05)
    assert stats["clip_low"] < stats["mean"] < stats["clip_high"]


def test_zscore_without_mask_uses_every_voxel():
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    out, _ = zscore(image, clip_percentiles=(0, 100))
    assert math.isclose(float(out.mean()), 0, abs_tol=1e-5) and math.isclose(float(out.std()), 1, rel_tol=1e-5)
    assert math.isclose(float(out[0, 0, 0]), -499.5 / np.arange(1000).std(), rel_tol=1e-5)


def test_one_hot_voxel_barely_moves_the_statistics():
    rng = np.random.default_rng(2)
    image = (300 + 40 * rng.normal(size=(24, 24, 24))).astype(np.float32)
    mask = ball()
    # the 99.95th percentile lies between the two largest values below the hot one when 0.9995 (N - 1) < N - 2
    assert mask.sum() > 2001
    _, clean = zscore(image, mask)
    hot = image.copy()
    hot[12, 12, 12] = 1e6
    out, stats = zscore(hot, mask)
    assert math.isclose(stats["mean"], clean["mean"], rel_tol=1e-3)
    assert math.isclose(stats["std"], clean["std"], rel_tol=0.02)
    assert stats["clip_high"] < 1000
    assert 0 < out[12, 12, 12] < 10  # clipped, not 25000 standard deviations


def test_zscore_of_a_constant_image_is_zero_not_nan():
    image = np.full((6, 6, 6), 7.0, np.float32)
    out, stats = zscore(image, ball((6, 6, 6), 2))
    assert np.all(out == 0) and stats["std"] == 1.0 and stats["mean"] == 7.0


def test_zscore_rejects_an_empty_mask_and_a_mismatched_shape():
    image = np.ones((4, 4, 4), np.float32)
    with pytest.raises(ValueError, match="empty"):
        zscore(image, np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        zscore(image, np.ones((4, 4, 5), np.uint8))


def test_ct_normalize_clips_then_scales():
    image = np.array([-1000.0, 0.0, 40.0, 100.0, 3000.0])
    out = ct_normalize(image, mean=40.0, std=20.0, low=-20.0, high=100.0)
    assert out.dtype == np.float32
    assert np.allclose(out, [-3.0, -2.0, 0.0, 3.0, 3.0])


# ---------------------------------------------------------------- labels


def test_binarize_keeps_only_lesion_labels_and_rounds_float_labels():
    labels = np.array([0, 1, 2, 3, 4, 1.9999, 2.0001, 3.4, 0.6, 4.0001])
    assert binarize(labels, (2, 3)).tolist() == [0, 0, 1, 1, 0, 1, 1, 1, 0, 0]
    assert binarize(labels, (2, 3)).dtype == np.uint8
    assert binarize(labels, (1,)).tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]


def test_threshold_interpolated_cuts_at_exactly_one_half():
    fraction = np.array([0.0, 0.4999, 0.5, 0.5001, 1.0], np.float32)
    out = threshold_interpolated(fraction)
    assert out.tolist() == [0, 0, 1, 1, 1] and out.dtype == np.uint8


# ---------------------------------------------------------------- storage


@pytest.mark.parametrize(("space", "spacing", "name"), [
    ("template", (2, 2, 2), "template_2mm"),
    ("template", (2.0, 2.0, 2.0), "template_2mm"),
    ("native", (0.5, 0.5, 0.5), "native_0.5mm"),
    ("native", (1, 1, 5), "native_1x1x5mm"),
    ("native", (0.8, 0.8, 3.3), "native_0.8x0.8x3.3mm"),
])
def test_data_identifier_names_space_and_spacing(space, spacing, name):
    assert data_identifier(space, spacing) == name


def make_plan(**changes) -> PreprocessingPlan:
    values = {"skull_strip": "none", "skull_strip_channel": 0, "bias_field": ("n4",), "template": "mni152_2009a_sym",
              "registration_transform": "Affine", "space": "template", "target_spacing": (2.0, 2.0, 2.0),
              "normalization": ("zscore_brain",), "lesion_labels": (1,),
              "reasons": {"target_spacing": "the cohort's median spacing"}}
    return PreprocessingPlan(**{**values, **changes})


def test_plan_digest_follows_planned_values_not_reasons():
    plan = make_plan()
    digest = plan_digest(plan)
    assert len(digest) == 16 and digest == plan_digest(make_plan())
    assert plan_digest(dataclasses.replace(plan, reasons={"target_spacing": "worded differently"})) == digest
    assert plan_digest(dataclasses.replace(plan, reasons={})) == digest
    changed = [dataclasses.replace(plan, target_spacing=(3.0, 3.0, 3.0)),
               dataclasses.replace(plan, registration_seed=1),
               dataclasses.replace(plan, lesion_labels=(1, 2)),
               dataclasses.replace(plan, clip_percentiles=(0.5, 99.5))]
    digests = {plan_digest(p) for p in changed}
    assert digest not in digests and len(digests) == len(changed)


def case_arrays(shape=(10, 12, 9), channels=2, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(channels, *shape)).astype(np.float32)
    brain = np.zeros(shape, np.uint8)
    brain[1:-1, 2:-2, 1:-1] = 1
    seg = np.zeros(shape, np.uint8)
    seg[3:5, 4:7, 2:4] = 1
    return image, brain, seg


def test_case_arrays_round_trip(tmp_path):
    image, brain, seg = case_arrays()
    path = tmp_path / "CASE.h5"
    assert write_case_arrays(path, image, brain, seg, seed=0) == int(seg.sum()) == 12
    arrays = read_case(path)
    assert set(arrays) == {"image", "seg", "brain"}
    assert np.array_equal(arrays["image"], image) and arrays["image"].dtype == np.float32
    assert np.array_equal(arrays["brain"], brain) and np.array_equal(arrays["seg"], seg)
    lesions = read_case(path, ("lesion_voxels",))["lesion_voxels"]
    assert np.array_equal(lesions, np.argwhere(seg > 0))
    assert [p.name for p in tmp_path.iterdir()] == ["CASE.h5"]  # no temporary file left


def test_case_without_labels_has_no_seg(tmp_path):
    image, brain, _ = case_arrays(channels=1)
    path = tmp_path / "CASE.h5"
    assert write_case_arrays(path, image, brain, None, seed=0) == 0
    assert set(read_case(path)) == {"image", "brain"}
    assert set(read_region(path, (0, 0, 0), (4, 4, 4))) == {"image"}


def padded_region(array: np.ndarray, start, size) -> np.ndarray:
    """The box of the last three axes at `start`, zero outside `array`: the reference for read_region."""
    pad = max(size)
    lead = [(0, 0)] * (array.ndim - 3)
    padded = np.pad(array, lead + [(pad, pad)] * 3)
    box = tuple(slice(s + pad, s + pad + k) for s, k in zip(start, size, strict=True))
    return padded[(Ellipsis, *box)]


@pytest.mark.parametrize(("start", "size"), [
    ((2, 3, 1), (4, 4, 4)),  # inside
    ((0, 0, 0), (10, 12, 9)),  # the whole grid
    ((-2, 8, 6), (5, 6, 5)),  # partly outside on three sides
    ((7, -3, -1), (6, 4, 3)),
])
def test_read_region_matches_slicing_with_zero_padding(tmp_path, start, size):
    image, brain, seg = case_arrays()
    path = tmp_path / "CASE.h5"
    write_case_arrays(path, image, brain, seg, seed=0)
    region = read_region(path, start, size)
    assert region["image"].shape == (2, *size) and region["seg"].shape == size
    assert np.array_equal(region["image"], padded_region(image, start, size))
    assert np.array_equal(region["seg"], padded_region(seg, start, size))


@pytest.mark.parametrize("start", [(-10, 0, 0), (12, 0, 0)])
def test_read_region_wholly_outside_the_grid_is_all_zeros(tmp_path, start):
    image, brain, seg = case_arrays()
    path = tmp_path / "CASE.h5"
    write_case_arrays(path, image, brain, seg, seed=0)
    region = read_region(path, start, (4, 4, 4))
    assert not region["image"].any() and not region["seg"].any()


def test_lesion_voxels_are_sampled_inside_the_lesions(tmp_path):
    shape = (30, 30, 30)
    seg = np.zeros(shape, np.uint8)
    seg[:, :, :15] = 1
    seg[::2, ::3, 20:] = 1
    image, brain = np.zeros((1, *shape), np.float32), np.ones(shape, np.uint8)
    total = int(seg.sum())
    assert total > MAX_LESION_VOXELS
    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for path in paths:
        assert write_case_arrays(path, image, brain, seg, seed=3) == total
    first, second = (read_case(p, ("lesion_voxels",))["lesion_voxels"] for p in paths)
    assert first.shape == (MAX_LESION_VOXELS, 3) and first.dtype == np.int32
    assert len(np.unique(first, axis=0)) == MAX_LESION_VOXELS
    assert np.all(seg[tuple(first.T)] == 1)
    assert (first[:, 2] >= 20).any()  # drawn from both lesions
    assert np.array_equal(first, second)  # one seed, one sample


@pytest.mark.parametrize(("image_shape", "seg_shape"), [
    ((1, 4, 4, 5), (4, 4, 4)),  # image off the grid
    ((1, 4, 4, 4), (4, 4, 5)),  # seg off the grid
    ((4, 4, 4), None),  # no channel axis
])
def test_write_case_arrays_rejects_mismatched_shapes(tmp_path, image_shape, seg_shape):
    brain = np.ones((4, 4, 4), np.uint8)
    seg = None if seg_shape is None else np.zeros(seg_shape, np.uint8)
    with pytest.raises(ValueError, match="share the grid"):
        write_case_arrays(tmp_path / "CASE.h5", np.zeros(image_shape, np.float32), brain, seg, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_is_finished_needs_arrays_and_properties_of_the_current_plan(tmp_path):
    image, brain, seg = case_arrays()
    props = tmp_path / "CASE.json"
    assert not is_finished(tmp_path, "CASE", "abc")
    props.write_text(json.dumps(case_properties("CASE", plan_digest="abc").to_json()))
    assert not is_finished(tmp_path, "CASE", "abc")  # properties without arrays
    write_case_arrays(tmp_path / "CASE.h5", image, brain, seg, seed=0)
    assert is_finished(tmp_path, "CASE", "abc")
    assert not is_finished(tmp_path, "CASE", "def")
    assert not is_finished(tmp_path, "OTHER", "abc")
    props.unlink()
    assert not is_finished(tmp_path, "CASE", "abc")  # arrays without properties: a killed run
    props.write_text('{"plan_digest": "abc", "format_')  # half written
    assert not is_finished(tmp_path, "CASE", "abc")
    newer = case_properties("CASE", plan_digest="abc", format_version=FORMAT_VERSION + 1)
    props.write_text(json.dumps(newer.to_json()))
    assert not is_finished(tmp_path, "CASE", "abc")


# ---------------------------------------------------------------- report


def record(case: str, brain: float = 1200.0, dice: float = 0.95, lesion: float | None = 3.5):
    measured = plausibility.Measurements(whole_brain=True, method="auto", stripped_with="deepbet", decision="a head",
                                         brain_ml=brain, foreground_ml=3000.0, brain_on_border=0.0,
                                         registration_dice=dice, lesion_ml=lesion)
    found = tuple(plausibility.findings(measured))
    return case_properties(case, seconds=10.0, timings={"read": 1.0, "register": 4.0}, brain_volume_ml=brain,
                           lesion_volume_ml=lesion, registration_dice=dice, plausibility=Plausibility(measured, found))


def test_case_flags_small_brain_and_poor_registration():
    assert case_flags(record("a"), 1200.0) == []
    assert case_flags(record("a", brain=1450.0, dice=0.90), 1200.0) == []  # 21% above, Dice at the limit
    small = case_flags(record("a", brain=720.0), 1200.0)
    assert len(small) == 1 and "40% below" in small[0] and "skull strip" in small[0]
    large = case_flags(record("a", brain=1560.0), 1200.0)
    assert len(large) == 1 and "30% above" in large[0]
    poor = case_flags(record("a", dice=0.87), 1200.0)  # between the fail (0.85) and flag (0.90) limits
    assert len(poor) == 1 and "0.87" in poor[0] and "registration" in poor[0]
    assert len(case_flags(record("a", brain=720.0, dice=0.87), 1200.0)) == 2
    assert case_flags(record("a", dice=0.8), 1200.0) == []  # below 0.85 it is a failed check, not a flag
    assert "template_overlap" in failed_checks(record("a", dice=0.8))
    assert case_flags(record("a", brain=720.0), None) == []  # no median: no volume flag


def test_build_report_needs_three_cases_for_a_median():
    two = build_report([record("b", brain=600.0), record("a", brain=1300.0)], {})
    assert two["summary"]["median_brain_volume_ml"] is None
    assert [row["case"] for row in two["cases"]] == ["a", "b"]
    assert all(row["flags"] == [] for row in two["cases"])
    three = build_report([record("a", brain=1200.0), record("b", brain=700.0), record("c", brain=1250.0)], {})
    assert three["summary"]["median_brain_volume_ml"] == 1200.0
    assert [bool(row["flags"]) for row in three["cases"]] == [False, True, False]
    assert three["summary"]["flagged"] == 1
    assert three["summary"]["mean_seconds_per_step"] == {"read": 1.0, "register": 4.0}


def test_format_table_lists_failed_cases_with_their_reason():
    report = build_report([record("PVL_002", lesion=None), record("PVL_003", dice=0.5)],
                          {"PVL_001": "cannot read an image of this case: truncated"})
    table = format_table(report)
    failed = [line for line in table.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("PVL_001") and "truncated" in failed[0]
    assert report["summary"]["failed"] == 1 and report["summary"]["finished"] == 2
    row = next(line for line in table.splitlines() if line.startswith("PVL_002"))
    assert " - " in row  # no lesion volume
    implausible = next(line for line in table.splitlines() if line.startswith("PVL_003"))
    assert "IMPLAUSIBLE" in implausible and "0.50 (Dice" in implausible
    assert report["summary"]["failed_checks"] == 1
    assert format_table(build_report([], {"X": "boom"})).splitlines()[-1].startswith("X")


# ---------------------------------------------------------------- runner


@pytest.mark.parametrize(("available", "requested", "cases", "expected"), [
    (None, 4, 10, 4),
    (None, 8, 3, 3),
    (None, 0, 5, 1),
    (None, 4, 0, 1),
    (100.0, 4, 10, 4),
    (10.0, 8, 10, 4),  # 10 GB / 2.5 GB per worker
    (3.0, 4, 10, 1),
    (1.0, 4, 10, 1),  # never below one worker
])
def test_memory_bounded_workers(monkeypatch, available, requested, cases, expected):
    monkeypatch.setattr(executor, "available_gb", lambda: available)
    assert executor.memory_bounded_workers(requested, cases, runner.GB_PER_WORKER) == expected


def test_remove_stale_temporaries_deletes_only_temporary_files(tmp_path):
    keep = [tmp_path / "CASE.h5", tmp_path / "qc" / "views" / "CASE.npz", tmp_path / "tmp_not_hidden.json"]
    drop = [tmp_path / ".tmp_abc.h5", tmp_path / "qc" / ".tmp_x.png", tmp_path / "transforms" / ".tmp_CASE_affine.mat"]
    for path in keep + drop:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    remove_stale_temporaries(tmp_path)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in drop)
    remove_stale_temporaries(tmp_path / "missing")  # nothing to clean: no error


# ---------------------------------------------------------------- skull strip


def test_brain_mask_none_keeps_the_largest_region_with_holes_filled():
    shape = (20, 20, 20)
    solid = ball(shape, 6.0).astype(bool)
    image = solid * np.float32(2.5)
    image[ball(shape, 2.0) > 0] = 0  # a dark cavity inside the brain (ventricle)
    image[8, 8, 4] = -1.0  # normalized images have negative values: still brain
    image[0:2, 0:2, 0:2] = 5.0  # a separate bright blob (a marker, a remnant of skull)
    mask = brain_mask(image, "none")
    assert mask.dtype == bool
    assert np.array_equal(mask, solid)
    assert not brain_mask(np.zeros(shape, np.float32), "none").any()


def test_brain_mask_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="bet2.*deepbet, none"):
        brain_mask(np.ones((3, 3, 3), np.float32), "bet2")
