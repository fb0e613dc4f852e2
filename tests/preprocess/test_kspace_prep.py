"""k-space preparation: acquired data, maps, target and labels per slice, scaled, streamed, written atomically."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from autopipe.cohort.image_io import read_volume
from autopipe.cohort.kspace_file import read_kspace, write_kspace_file
from autopipe.mri.coils import coil_geometry, coil_maps, pixel_points_mm
from autopipe.mri.fft import ifft2c
from autopipe.mri.masks import make_mask
from autopipe.mri.operators import forward, normalize_maps, sense_combine
from autopipe.preprocess import kspace_prep
from autopipe.preprocess.kspace_prep import kspace_slice_count, prepare_kspace_case, read_kspace_slice
from tests.tiny_cohort import make_tiny_cohort

MATRIX, SPACING, SLICES, COILS, CALIBRATION = (64, 56), (3.0, 3.0), 3, 6, 16


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, np.ndarray]:
    """The tiny cohort's k-space file of case_000 and that case's label volume."""
    root = make_tiny_cohort(tmp_path / "Dataset001_Tiny", n_cases=1, coils=4, kspace_slices=3)
    return root / "kspace" / "case_000.h5", read_volume(root / "labelsTr" / "case_000.nii.gz").data


def _object(shape=MATRIX):
    """Head-like ellipse (bool [H, W]) and a smooth complex image inside it, one slice."""
    points = pixel_points_mm(shape, SPACING)
    x, y = points[..., 0], points[..., 1]
    inside = np.hypot(x / (0.4 * shape[0] * SPACING[0]), y / (0.4 * shape[1] * SPACING[1])) < 1
    image = inside * (1.0 + 0.5 * np.cos(x / 12) * np.sin(y / 17)) * np.exp(0.01j * y)
    return inside, image


def _raw_file(path: Path, mask_type="gaussian", fully_sampled=True, segmentation=True, noise=0.002) -> dict:
    """A realistic raw file: loop-coil maps, a smooth object, a mask with a full calibration square."""
    inside, image = _object()
    images = np.stack([image * (1 + 0.2 * s) for s in range(SLICES)]).astype(np.complex64)
    points = pixel_points_mm(MATRIX, SPACING)
    maps = normalize_maps(coil_maps(coil_geometry(COILS, (MATRIX[0] * 3.0, MATRIX[1] * 3.0), 7), points))
    kspace = forward(images, maps)
    rng = np.random.default_rng(0)
    kspace = (kspace + noise * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)))
    mask = make_mask(mask_type, MATRIX, 3.0, CALIBRATION, seed=1).astype(np.uint8)
    reference = sense_combine(ifft2c(kspace), maps)
    if not fully_sampled:
        kspace = kspace * mask
    label = np.zeros((SLICES, *MATRIX), np.uint8)
    label[:, 20:30, 20:26] = 1
    attrs = {"fully_sampled": fully_sampled, "acceleration": 3.0, "effective_acceleration": 3.0,
             "calibration_size": CALIBRATION, "mask_type": mask_type, "slice_axis": 1,
             "slice_indices": np.arange(4, 4 + SLICES)}
    write_kspace_file(path, kspace.astype(np.complex64), attrs, mask=mask, reconstruction_sense=reference,
                      segmentation=label if segmentation else None)
    return {"inside": inside, "reference": reference, "mask": mask, "label": label}


def test_tiny_case_shapes_attrs_and_the_source_untouched(tiny, tmp_path):
    source, _ = tiny
    before = source.read_bytes()
    destination = tmp_path / "prepared" / "case_000.h5"
    summary = prepare_kspace_case(source, destination)
    assert source.read_bytes() == before
    assert summary["slices"] == 3 and summary["coils"] == 4 and summary["matrix"] == [20, 24]
    assert summary["has_target"] and summary["has_segmentation"] and summary["seconds"]["total"] > 0
    assert not summary["calibration_fully_sampled"]  # the tiny cohort samples every other row, calibration included
    with h5py.File(destination, "r") as f:
        shapes = {name: (f[name].shape, f[name].dtype, f[name].chunks) for name in f}
        attrs = dict(f.attrs)
    assert shapes["kspace"] == ((3, 4, 20, 24), np.complex64, (1, 4, 20, 24))
    assert shapes["sensitivity_map"] == ((3, 4, 20, 24), np.complex64, (1, 4, 20, 24))
    assert shapes["target"] == ((3, 20, 24), np.complex64, (1, 20, 24))
    assert shapes["segmentation"] == ((3, 20, 24), np.uint8, (1, 20, 24))
    assert shapes["mask"][:2] == ((20, 24), np.uint8)
    assert attrs["scale"] == pytest.approx(summary["scale"]) and attrs["coil_method"] == "espirit"
    assert attrs["calibration_size"] == 4 and attrs["slice_axis"] == 2 and attrs["source"] == "case_000.h5"
    np.testing.assert_array_equal(attrs["slice_indices"], read_kspace(source)["attrs"]["slice_indices"])
    assert list(tmp_path.joinpath("prepared").iterdir()) == [destination]  # no temporary file left


@pytest.mark.parametrize("coil_method, tolerance", [("espirit", 0.005), ("calibration", 0.02)])
def test_target_matches_the_sense_reference(tmp_path, coil_method, tolerance):
    raw = _raw_file(tmp_path / "raw.h5")
    summary = prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "out.h5", coil_method=coil_method)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        target = f["target"][()] * f.attrs["scale"]
    assert summary["calibration_fully_sampled"]
    reference, inside = np.abs(raw["reference"]), np.broadcast_to(raw["inside"], raw["reference"].shape)
    error = np.linalg.norm((np.abs(target) - reference)[inside]) / np.linalg.norm(reference[inside])
    assert error < tolerance  # measured: espirit 6e-5, calibration 2e-3; all-equal maps ~0.7


@pytest.mark.parametrize("mask_type", ["gaussian", "equispaced"])
def test_acquired_kspace_is_zero_outside_the_mask_and_scaled(tmp_path, mask_type):
    raw = _raw_file(tmp_path / "raw.h5", mask_type=mask_type)
    prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        kspace, mask, maps = f["kspace"][()], f["mask"][()], f["sensitivity_map"][()]
    np.testing.assert_array_equal(mask, np.broadcast_to(raw["mask"], MATRIX))  # a [W] line mask becomes [H, W]
    assert not kspace[..., mask == 0].any() and np.all(kspace[..., mask == 1] != 0)
    zero_filled = np.abs(sense_combine(ifft2c(kspace), maps))
    assert np.percentile(zero_filled, 99) == pytest.approx(1.0, rel=1e-4)


def test_undersampled_source_uses_its_reference_or_has_no_target(tmp_path):
    raw = _raw_file(tmp_path / "raw.h5", fully_sampled=False)
    summary = prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert summary["has_target"] and f.attrs["target_source"] == "reconstruction_sense"
        np.testing.assert_allclose(f["target"][()] * f.attrs["scale"], raw["reference"], rtol=1e-5, atol=1e-5)

    data = read_kspace(tmp_path / "raw.h5", names=("kspace", "mask"))
    write_kspace_file(tmp_path / "bare.h5", data["kspace"], data["attrs"], mask=data["mask"])
    summary = prepare_kspace_case(tmp_path / "bare.h5", tmp_path / "bare_out.h5")
    assert not summary["has_target"] and not summary["has_segmentation"]
    with h5py.File(tmp_path / "bare_out.h5", "r") as f:
        assert set(f) == {"kspace", "mask", "sensitivity_map"}


def test_segmentation_comes_from_the_label_volume_and_is_binarized(tmp_path):
    _raw_file(tmp_path / "raw.h5", segmentation=False)
    label = np.random.default_rng(3).integers(0, 3, size=(MATRIX[0], 12, MATRIX[1])).astype(np.uint8)
    summary = prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "out.h5", label=label, lesion_labels=(2,))
    assert summary["has_segmentation"]
    with h5py.File(tmp_path / "out.h5", "r") as f:
        segmentation = f["segmentation"][()]
    for s, index in enumerate(range(4, 4 + SLICES)):  # slice_axis 1, slice_indices 4, 5, 6
        np.testing.assert_array_equal(segmentation[s], (label.take(index, axis=1) == 2).astype(np.uint8))


def test_with_classes_each_label_value_becomes_its_class_position(tmp_path):
    """classes background 0, edema 2, lesion 5: value 2 -> class 1, 5 -> class 2, a value of no class -> 0."""
    _raw_file(tmp_path / "raw.h5", segmentation=False)
    label = np.random.default_rng(4).choice([0, 1, 2, 5], size=(MATRIX[0], 12, MATRIX[1])).astype(np.uint8)
    prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "out.h5", label=label, lesion_labels=(5,),
                        classes={"background": 0, "edema": 2, "lesion": 5})
    with h5py.File(tmp_path / "out.h5", "r") as f:
        segmentation = f["segmentation"][()]
        assert [str(n) for n in f.attrs["class_names"]] == ["background", "edema", "lesion"]
        assert list(f.attrs["lesion_classes"]) == [2]
    for s, index in enumerate(range(4, 4 + SLICES)):
        values = label.take(index, axis=1)
        np.testing.assert_array_equal(segmentation[s], np.select([values == 2, values == 5], [1, 2], 0))


def test_tiny_segmentation_equals_the_label_slices(tiny, tmp_path):
    source, label = tiny
    prepare_kspace_case(source, tmp_path / "out.h5", label=label)
    attrs = read_kspace(source)["attrs"]
    with h5py.File(tmp_path / "out.h5", "r") as f:
        segmentation = f["segmentation"][()]
    expected = np.stack([label.take(i, axis=attrs["slice_axis"]) for i in attrs["slice_indices"]])
    np.testing.assert_array_equal(segmentation, expected)


def test_one_slice_reads_like_the_full_arrays(tiny, tmp_path):
    source, _ = tiny
    prepare_kspace_case(source, tmp_path / "out.h5")
    assert kspace_slice_count(tmp_path / "out.h5") == 3
    one = read_kspace_slice(tmp_path / "out.h5", 1)
    assert set(one) == {"kspace", "mask", "sensitivity_map", "target", "segmentation"}
    with h5py.File(tmp_path / "out.h5", "r") as f:
        for name in ("kspace", "sensitivity_map", "target", "segmentation"):
            np.testing.assert_array_equal(one[name], f[name][()][1])
        np.testing.assert_array_equal(one["mask"], f["mask"][()])
    with pytest.raises(IndexError, match="3 slices"):
        read_kspace_slice(tmp_path / "out.h5", 3)


def test_unknown_coil_method_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="choices: calibration, espirit"):
        prepare_kspace_case(tiny[0], tmp_path / "out.h5", coil_method="walsh")
    with pytest.raises(ValueError, match="never overwritten"):
        prepare_kspace_case(tiny[0], tiny[0])


def test_a_failure_midway_leaves_no_file(tiny, tmp_path, monkeypatch):
    def broken(kspace, calibration_size):
        raise RuntimeError("estimator failed")

    destination = tmp_path / "prepared" / "case_000.h5"
    destination.parent.mkdir()
    monkeypatch.setitem(kspace_prep.COIL_METHODS, "espirit", broken)
    with pytest.raises(RuntimeError, match="estimator failed"):
        prepare_kspace_case(tiny[0], destination)
    assert list(destination.parent.iterdir()) == []

    def write_fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.undo()
    monkeypatch.setattr(h5py.File, "create_dataset", write_fails)  # fails after the temporary file is opened
    with pytest.raises(OSError, match="disk full"):
        prepare_kspace_case(tiny[0], destination)
    assert list(destination.parent.iterdir()) == []


def test_espirit_maps_that_explain_too_little_give_way_to_calibration_maps(tmp_path, monkeypatch, caplog):
    """A broken ESPIRiT result (here: coils swapped) is caught by its residual and replaced, with a warning."""
    _raw_file(tmp_path / "raw.h5")
    good = prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "good.h5")
    assert good["coil_method"] == "espirit" and good["coil_map_residual"] < kspace_prep.MAP_RESIDUAL_LIMIT
    swapped = kspace_prep.COIL_METHODS["espirit"]
    monkeypatch.setitem(kspace_prep.COIL_METHODS, "espirit", lambda k, c: np.roll(swapped(k, c), 1, axis=-3))
    summary = prepare_kspace_case(tmp_path / "raw.h5", tmp_path / "fallback.h5")
    assert summary["coil_method"] == "calibration" and summary["coil_map_residual"] < 0.05
    assert "ESPIRiT coil maps leave" in caplog.text
    with h5py.File(tmp_path / "fallback.h5") as f:
        assert f.attrs["coil_method"] == "calibration"
