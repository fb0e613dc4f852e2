"""The fingerprint on tiny cohorts: geometry, lesions (26-connected), skull stripping, k-space, clinical."""

import numpy as np
import pytest

from autopipe.cohort.dataset import load_dataset, training_case_ids
from autopipe.cohort.image_io import Volume, write_volume
from autopipe.plan.case_fingerprint import CaseJob, fingerprint_case, measured_calibration, otsu_threshold
from autopipe.plan.fingerprint import fingerprint_dataset
from autopipe.plan.preprocessing import plan_preprocessing
from tests.tiny_cohort import make_tiny_cohort

SHAPE, SPACING = (20, 24, 16), (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = make_tiny_cohort(tmp_path_factory.mktemp("raw") / "Dataset001_Tiny", n_cases=4)
    label = np.zeros(SHAPE, np.uint8)
    label[5, 5, 5] = label[6, 6, 6] = 1  # touch at a corner only: one lesion with 26-connectivity
    label[12, 15, 10:13] = 1  # a second lesion of 3 voxels
    write_volume(root / "labelsTr" / "case_000.nii.gz", Volume(label, np.diag([*SPACING, 1.0])))
    spec = load_dataset(root)
    return fingerprint_dataset(spec, training_case_ids(spec), workers=1, progress=False)


def test_geometry(cohort):
    case = cohort["cases"]["case_001"]
    assert case["spacing"] == [2.0, 2.0, 2.0]
    assert case["shape"] == list(SHAPE) and case["axcodes"] == "RAS"
    assert case["shape_after_crop"] == list(SHAPE) and case["crop_ratio"] == 1.0  # noise everywhere: no crop
    assert cohort["geometry"]["spacing_ras"] == [[2.0, 2.0, 2.0]] * 4
    assert cohort["num_cases"] == 4


def test_lesions_are_26_connected_components(cohort):
    lesions = cohort["cases"]["case_000"]["lesions"]
    assert lesions["count"] == 2
    assert lesions["volumes_mm3"] == [24.0, 16.0]  # 3 and 2 voxels of 8 mm^3
    assert lesions["smallest_mm3"] == 16.0 and lesions["total_mm3"] == 40.0
    assert cohort["cases"]["case_003"]["lesions"]["count"] == 0  # the tiny cohort's lesion-free case
    assert cohort["lesions"]["cases_without_lesions"] == 1
    assert cohort["lesions"]["smallest_mm3"] == 16.0


def test_intensity_statistics(cohort):
    stats = cohort["intensity"]["FLAIR"]
    assert stats["foreground"]["median"] == pytest.approx(150, abs=5)  # lesions: brain 100 + 50 (case_000's are not)
    assert 95 < stats["brain"]["median"] < 105  # the tissue above the Otsu threshold
    assert stats["foreground"]["percentile_00_5"] <= stats["foreground"]["median"] <= stats["foreground"]["max"]


def test_kspace_fields(cohort):
    ksp = cohort["kspace"]
    assert ksp["coils"] == 4 and ksp["matrix"] == [20, 24] and ksp["slices_per_case"] == 3
    assert ksp["mask_types"] == {"equispaced": 4}
    assert ksp["effective_acceleration_median"] == pytest.approx(2.0)
    assert ksp["with_segmentation"] == 4
    assert cohort["cases"]["case_000"]["kspace"]["calibration_size_attr"] == 4


def test_clinical_balance(cohort):
    clinical = cohort["clinical"]
    assert (clinical["impaired"], clinical["good"], clinical["missing"]) == (2, 2, [])
    assert clinical["labels"]["case_001"] == 1


def _head(tmp_path, name, stripped):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (40, 48, 40)], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    brain = radius < 0.6
    if stripped:
        image = np.where(brain, 100 + rng.normal(0, 3, brain.shape), 0.0)
    else:  # skull ring and Rician noise in the air
        signal = 100.0 * brain + 60.0 * ((radius > 0.7) & (radius < 0.8))
        image = np.abs(signal + rng.normal(0, 5, brain.shape) + 1j * rng.normal(0, 5, brain.shape))
    path = tmp_path / f"{name}_0000.nii.gz"
    write_volume(path, Volume(image.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0])))
    return fingerprint_case(CaseJob(name, (path,), None, None))


def test_skull_stripped_heads_are_recognized(tmp_path):
    stripped = _head(tmp_path, "stripped", stripped=True).record
    head = _head(tmp_path, "head", stripped=False).record
    assert stripped["skull_stripping"]["looks_stripped"] is True
    assert stripped["skull_stripping"]["background_value"] == 0.0
    assert stripped["crop_ratio"] < 0.5
    assert head["skull_stripping"]["looks_stripped"] is False
    assert head["skull_stripping"]["background_fraction"] < 0.01
    assert head["crop_ratio"] == 1.0


def test_preprocessing_strips_only_unstripped_heads():
    def plan(stripped, channels):
        evidence = {"value": stripped, "cases_looking_stripped": 3 if stripped else 0, "cases": 3}
        return plan_preprocessing(channels, evidence, (1.0, 1.0, 1.0), (1,), {"background": 0, "lesion": 1})

    assert plan(True, {0: "FLAIR"}).skull_strip == "none"
    assert plan(False, {0: "FLAIR"}).skull_strip == "deepbet"
    assert plan(False, {0: "FLAIR"}).skull_strip_channel == 0
    assert plan(False, {0: "FLAIR", 1: "T1"}).skull_strip_channel == 1
    assert plan(False, {0: "FLAIR", 1: "T1"}).skull_strip == "deepbet"
    assert plan(True, {0: "FLAIR", 1: "T1"}).normalization == ("zscore_brain", "zscore_brain")


def test_unreadable_case_is_reported_not_raised(tmp_path):
    bad = tmp_path / "bad_0000.nii.gz"
    bad.write_bytes(b"not an image")
    result = fingerprint_case(CaseJob("bad", (bad,), None, None))
    assert result.error and "cannot read" in result.error


def test_otsu_splits_two_populations():
    values = np.concatenate([np.full(1000, 10.0), np.full(1000, 100.0)])
    assert 10 < otsu_threshold(values) < 100


def test_measured_calibration():
    lines = np.zeros(64, bool)
    lines[1::6] = True
    lines[28:36] = True  # 8 central lines (centre index 32)
    assert measured_calibration(lines, (64, 64)) == 8
    mask = np.random.default_rng(0).random((64, 64)) < 0.1
    mask[29:35, 29:35] = True  # 6x6 square around DC (32, 32)
    assert measured_calibration(mask, (64, 64)) == 6


def test_geometry_in_ras_order_for_any_orientation():
    from autopipe.plan.case_fingerprint import geometry
    from autopipe.plan.fingerprint import ras

    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 3.0, -1.0, 1.0, 1.0  # file axes: S, L, A
    record = geometry(affine, (30, 200, 180))
    assert record["axcodes"] == "SLA" and record["spacing"] == [3.0, 1.0, 1.0]
    assert record["ras_axes"] == [1, 2, 0]
    assert ras(record["spacing"], record["ras_axes"]) == [1.0, 1.0, 3.0]
    assert ras(record["shape"], record["ras_axes"]) == [200, 180, 30]
