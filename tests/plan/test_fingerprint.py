"""The fingerprint on tiny cohorts: geometry, lesions (26-connected), skull stripping, k-space, clinical."""

import numpy as np
import pytest

from autopipe.anatomy.head_evidence import head_evidence
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


def _small_head(tmp_path, name, stripped):
    """A 40x48x40 mm 'head': too small to hold a whole brain, whatever its background."""
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


def test_a_crop_holds_no_whole_brain_and_is_neither_stripped_nor_extracted(tmp_path):
    for stripped in (True, False):
        record = _small_head(tmp_path, f"small_{stripped}", stripped=stripped).record
        head = record["head"]
        assert head["whole_brain"] is False and head["needs_strip"] is False
        assert head["extractor_ml"] is None  # the extractor never ran
        assert "smaller than any whole brain" in head["reason"]
        assert max(head["extent_mm"]) <= 48


def _ball(radius_mm: float, spacing: float = 2.0, size: int = 110) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size) - size / 2) * spacing
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.sqrt(x**2 + y**2 + z**2) < radius_mm, np.diag([spacing] * 3 + [1.0])


def test_the_extractors_share_of_the_object_decides_stripping():
    head, affine = _ball(90.0)
    inner, _ = _ball(65.0)  # (65/90)^3 = 0.38 of the head: like a real brain in its head
    image = np.where(head, 100.0, 0.0).astype(np.float32)  # zero outside, as converters write heads
    evidence, foreground, brain = head_evidence(image, affine, lambda _: inner)
    assert evidence.whole_brain and evidence.needs_strip
    assert evidence.extractor_share == pytest.approx(0.38, abs=0.02)
    assert np.array_equal(brain, inner) and foreground.sum() == head.sum()
    stripped, _, _ = head_evidence(np.where(inner, 100.0, 0.0).astype(np.float32), affine, lambda _: inner)
    assert stripped.whole_brain and not stripped.needs_strip and stripped.extractor_share == pytest.approx(1.0)
    assert "already skull-stripped" in stripped.reason and "a head with skull" in evidence.reason


def test_the_object_is_found_above_noise_and_constant_backgrounds():
    head, affine = _ball(90.0)
    rng = np.random.default_rng(1)
    noisy = np.where(head, 100.0 + rng.normal(0, 5, head.shape), np.abs(rng.normal(0, 4, head.shape)))
    constant = np.where(head, 100.0, 7.0)
    for image in (noisy, constant):
        found = head_evidence(image.astype(np.float32), affine, lambda _: head)[1]
        assert abs(int(found.sum()) - int(head.sum())) < 0.01 * head.sum()


def test_preprocessing_follows_what_the_scans_hold():
    def anatomy(whole, strip, n=3):
        return {"cases": n, "whole_brain_cases": whole, "partial_cases": [f"c{i}" for i in range(n - whole)],
                "needs_strip_cases": [f"c{i}" for i in range(strip)], "stripped_cases": [], "rule": "rule"}

    def plan(evidence, channels, crop_ratio=1.0):
        return plan_preprocessing(channels, evidence, (1.0, 1.0, 1.0), (1,), {"background": 0, "lesion": 1},
                                  crop_ratio)

    heads = plan(anatomy(3, 3), {0: "FLAIR", 1: "T1"})
    assert heads.skull_strip == "auto" and heads.skull_strip_channel == 1 and heads.space == "template"
    assert heads.bias_field == ("n4", "n4") and heads.field_of_view == "whole_brain"
    assert plan(anatomy(3, 0), {0: "FLAIR"}).skull_strip == "auto"  # stripped cohorts too: a new case may not be
    crops = plan(anatomy(0, 0), {0: "MRI"})
    assert (crops.skull_strip, crops.space, crops.bias_field, crops.field_of_view) == ("none", "native", ("none",),
                                                                                      "partial")
    assert crops.normalization == ("zscore",)  # nnU-Net: all voxels when cropping keeps >= 75%
    assert plan(anatomy(0, 0), {0: "MRI"}, crop_ratio=0.5).normalization == ("zscore_brain",)
    mixed = plan(anatomy(2, 2), {0: "T1"})
    assert mixed.space == "native" and mixed.skull_strip == "auto" and "c0" in mixed.reasons["field_of_view"]


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
