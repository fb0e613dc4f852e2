"""`autopipe check`: each test breaks one thing in a valid tiny cohort and expects the matching Problem."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from autopipe.cohort.check import Problem, check_cohort, format_problem
from autopipe.cohort.check_clinical import balance_problems
from autopipe.cohort.check_images import spacing_problems
from autopipe.cohort.dataset import ClinicalSpec
from autopipe.cohort.image_io import Volume, read_volume, write_volume

NAME = "Dataset001_Tiny"
IMAGE = "imagesTr/case_001_0000.nii.gz"
LABEL = "labelsTr/case_001.nii.gz"
KSPACE = "kspace/case_001.h5"


def check(root: Path, workers: int = 1) -> list[Problem]:
    return check_cohort(root, workers=workers, progress=False)


def errors(root: Path) -> list[Problem]:
    return [p for p in check(root) if p.severity == "error"]


def the_error(root: Path) -> Problem:
    """The single error a cohort with one thing broken must give."""
    found = errors(root)
    assert len(found) == 1, [format_problem(p) for p in found]
    return found[0]


def the_warning(root: Path, phrase: str) -> Problem:
    found = [p for p in check(root) if p.severity == "warning" and phrase in p.what]
    assert len(found) == 1, [format_problem(p) for p in check(root)]
    return found[0]


def assert_problem(p: Problem, severity: str, case: str | None, file: str | None, phrase: str) -> None:
    assert (p.severity, p.case, p.file) == (severity, case, file), format_problem(p)
    assert phrase in p.what, format_problem(p)
    assert p.fix, "every problem says what to do"


def rewrite_image(path: Path, change: Callable[[np.ndarray], np.ndarray],
                  affine: Callable[[np.ndarray], np.ndarray] = lambda a: a) -> None:
    volume = read_volume(path)
    write_volume(path, Volume(change(volume.data.copy()), affine(volume.affine.copy())))


def edit_dataset_json(root: Path, change: Callable[[dict], None]) -> None:
    raw = json.loads((root / "dataset.json").read_text())
    change(raw)
    (root / "dataset.json").write_text(json.dumps(raw))


def rewrite_kspace(path: Path, drop: tuple[str, ...] = (), attrs: dict | None = None, **datasets: np.ndarray) -> None:
    """Rewrite a k-space file with h5py directly (the project's writer refuses broken layouts)."""
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in f}
        old_attrs = dict(f.attrs)
    arrays = {k: v for k, v in {**arrays, **datasets}.items() if k not in drop}
    new_attrs = {k: v for k, v in {**old_attrs, **(attrs or {})}.items() if k not in drop}
    with h5py.File(path, "w") as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=array)
        f.attrs.update(new_attrs)


def write_clinical(root: Path, *lines: str) -> None:
    (root / "clinical.csv").write_text("\n".join(lines) + "\n")


def tree_fingerprint(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under root with size, modification time and content hash."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns,
                                             hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
            for p in sorted(root.rglob("*"))}


# --- a valid cohort, and the promise never to write ---------------------------------------------------------------


def test_valid_cohort_has_no_errors_and_only_the_expected_warnings(cohort: Path) -> None:
    problems = check(cohort)
    assert [(p.severity, p.case, p.file) for p in problems] == [
        ("warning", None, "imagesTr"),  # 4 cases: fewer than 5 folds
        ("warning", "case_003", "labelsTr/case_003.nii.gz"),  # every fourth tiny case has no lesion
    ]
    assert "only 4 training case" in problems[0].what
    assert "no lesion voxels" in problems[1].what


def test_check_leaves_the_cohort_byte_identical(cohort: Path) -> None:
    (cohort / IMAGE).write_bytes((cohort / IMAGE).read_bytes()[:300])  # broken files must not be "repaired" either
    before = tree_fingerprint(cohort)
    assert check(cohort, workers=2)
    assert tree_fingerprint(cohort) == before


def test_workers_give_the_same_problems_as_one_process(cohort: Path) -> None:
    rewrite_image(cohort / IMAGE, lambda a: np.where(a > 120, np.nan, a))
    rewrite_image(cohort / "labelsTr/case_002.nii.gz", lambda a: a * 2)
    assert check(cohort, workers=2) == check(cohort, workers=1)
    assert len(errors(cohort)) == 2


def test_a_failing_check_becomes_a_problem_not_a_crash(cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr("autopipe.cohort.check.lesion_problems", broken)
    found = errors(cohort)
    assert [p.case for p in found] == ["case_000", "case_001", "case_002", "case_003"]
    assert_problem(found[0], "error", "case_000", None, "could not be checked (RuntimeError: a bug in a check)")


def test_format_problem_names_case_file_what_and_fix() -> None:
    line = format_problem(Problem("error", "PVL_003", "imagesTr/PVL_003_0000.nii.gz", "12 voxels are NaN",
                                  "re-export the scan"))
    assert line == "ERROR   PVL_003  imagesTr/PVL_003_0000.nii.gz: 12 voxels are NaN — re-export the scan"
    assert format_problem(Problem("warning", None, "imagesTr", "few cases", "add some")).startswith(
        "WARNING imagesTr: few cases")


def test_errors_come_first_then_cases_in_order(cohort: Path) -> None:
    (cohort / "labelsTr/case_003.nii.gz").unlink()
    rewrite_image(cohort / IMAGE, lambda a: np.where(a > 120, np.inf, a))
    problems = check(cohort)
    assert [p.severity for p in problems] == sorted((p.severity for p in problems), key=lambda s: s != "error")
    assert [p.case for p in problems if p.severity == "error"] == ["case_001", "case_003"]


# --- dataset.json ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda raw: raw.pop("numTraining"), "numTraining"),
    (lambda raw: raw.update(modality=raw.pop("channel_names")), "nnU-Net v1"),
    (lambda raw: raw.update(labels={"background": 0, "lesion": 2}), "not consecutive"),
    (lambda raw: raw.update(labels={"lesion": 1}), "no background"),
])
def test_bad_dataset_json_is_the_only_problem(cohort: Path, change: Callable[[dict], None], phrase: str) -> None:
    edit_dataset_json(cohort, change)
    problems = check(cohort)
    assert len(problems) == 1
    assert_problem(problems[0], "error", None, "dataset.json", phrase)


def test_cohort_folder_that_does_not_exist(tmp_path: Path) -> None:
    (problem,) = check(tmp_path / "Dataset404_Typo")
    assert_problem(problem, "error", None, None, "is not a folder")


def test_missing_dataset_json(cohort: Path) -> None:
    (cohort / "dataset.json").unlink()
    assert_problem(the_error(cohort), "error", None, "dataset.json", "missing")


def test_dataset_json_that_is_not_json(cohort: Path) -> None:
    (cohort / "dataset.json").write_text('{"channel_names": {"0": "FLAIR"},')
    assert_problem(the_error(cohort), "error", None, "dataset.json", "not valid JSON")


# --- folder layout ---------------------------------------------------------------------------------------------------


def test_missing_images_folder(cohort: Path) -> None:
    shutil.rmtree(cohort / "imagesTr")
    assert_problem(the_error(cohort), "error", None, "imagesTr", "missing")


def test_empty_images_folder(cohort: Path) -> None:
    shutil.rmtree(cohort / "imagesTr")
    (cohort / "imagesTr").mkdir()
    assert_problem(the_error(cohort), "error", None, "imagesTr", "holds no image")


def test_case_missing_a_channel(two_channels: Path) -> None:
    (two_channels / "imagesTr/case_001_0001.nii.gz").unlink()
    assert_problem(the_error(two_channels), "error", "case_001", "imagesTr/case_001_0001.nii.gz", "channel 1 (T1)")


def test_file_with_an_undeclared_channel(cohort: Path) -> None:
    shutil.copy(cohort / IMAGE, cohort / "imagesTr/case_001_0003.nii.gz")
    assert_problem(the_error(cohort), "error", "case_001", "imagesTr/case_001_0003.nii.gz", "channel 3 is not declared")


def test_missing_label_file(cohort: Path) -> None:
    (cohort / LABEL).unlink()
    assert_problem(the_error(cohort), "error", "case_001", LABEL, "label map is missing")


def test_label_file_without_images(cohort: Path) -> None:
    shutil.copy(cohort / LABEL, cohort / "labelsTr/case_777.nii.gz")
    assert_problem(the_error(cohort), "error", "case_777", "labelsTr/case_777.nii.gz", "without images")


def test_number_of_cases_differs_from_num_training(cohort: Path) -> None:
    edit_dataset_json(cohort, lambda raw: raw.update(numTraining=5))
    assert_problem(the_error(cohort), "error", None, "dataset.json", "numTraining is 5 but imagesTr holds 4")


def test_test_images_are_checked_for_missing_channels(two_channels: Path) -> None:
    (two_channels / "imagesTs").mkdir()
    shutil.copy(two_channels / "imagesTr/case_000_0000.nii.gz", two_channels / "imagesTs/new_000_0000.nii.gz")
    assert_problem(the_error(two_channels), "error", "new_000", "imagesTs/new_000_0001.nii.gz", "channel 1")


def test_files_not_named_like_case_images_are_warned_about(cohort: Path) -> None:
    (cohort / "imagesTr/notes.txt").write_text("scanned on the old scanner")
    shutil.copy(cohort / IMAGE, cohort / "imagesTr/case_009.nii.gz")
    warned = [p for p in check(cohort) if "does not follow the naming" in p.what]
    assert [(p.severity, p.file) for p in warned] == [("warning", "imagesTr/case_009.nii.gz"),
                                                      ("warning", "imagesTr/notes.txt")]
    assert not errors(cohort)


# --- unreadable files and voxel values ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),  # cut in half
    lambda path: path.write_text("patient list, not an image\n"),
])
def test_unreadable_image(cohort: Path, damage: Callable[[Path], None]) -> None:
    damage(cohort / IMAGE)
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, "cannot be read")


def test_unreadable_label(cohort: Path) -> None:
    (cohort / LABEL).write_bytes((cohort / LABEL).read_bytes()[:-20])
    assert_problem(the_error(cohort), "error", "case_001", LABEL, "cannot be read")


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda a: a[:, :, 8], "is 2D"),
    (lambda a: np.stack([a, a], axis=-1), "is 4D"),
])
def test_image_that_is_not_3d(cohort: Path, change: Callable[[np.ndarray], np.ndarray], phrase: str) -> None:
    rewrite_image(cohort / IMAGE, change)
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, phrase)


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda a: np.zeros_like(a), "empty: every voxel is 0"),
    (lambda a: np.full_like(a, 7.0), "constant: every voxel is 7"),
])
def test_image_without_signal(cohort: Path, change: Callable[[np.ndarray], np.ndarray], phrase: str) -> None:
    rewrite_image(cohort / IMAGE, change)
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, phrase)


def test_nan_voxels_are_counted(cohort: Path) -> None:
    def twelve_nans(a: np.ndarray) -> np.ndarray:
        a.flat[:12] = np.nan
        return a

    rewrite_image(cohort / IMAGE, twelve_nans)
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, "12 voxels are NaN")


def test_infinite_voxels(cohort: Path) -> None:
    rewrite_image(cohort / IMAGE, lambda a: np.where(a > 120, np.inf, a))
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, "are infinite")


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda a: a * 0.5, "non-integer label values (0.5)"),
    (lambda a: a * 2, "label values 2 that dataset.json 'labels' does not declare"),
    (lambda a: a.astype(np.int16) * -1, "negative label values (-1)"),
])
def test_bad_label_values(cohort: Path, change: Callable[[np.ndarray], np.ndarray], phrase: str) -> None:
    rewrite_image(cohort / LABEL, change)
    assert_problem(the_error(cohort), "error", "case_001", LABEL, phrase)


# --- geometry --------------------------------------------------------------------------------------------------------


def _shift_origin(affine: np.ndarray) -> np.ndarray:
    affine[:3, 3] += [0.0, 0.0, 1.5]
    return affine


def _rotate_two_degrees(affine: np.ndarray) -> np.ndarray:
    c, s = np.cos(np.radians(2)), np.sin(np.radians(2))
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return affine


@pytest.mark.parametrize(("affine", "phrase"), [
    (lambda a: a @ np.diag([1.0, 1.0, 1.25, 1.0]), "spacing 2 x 2 x 2.5 mm here vs 2 x 2 x 2 mm"),
    (lambda a: a @ np.diag([-1.0, 1.0, 1.0, 1.0]), "orientation LAS here vs RAS"),
    (_shift_origin, "origin"),
    (_rotate_two_degrees, "rotated by 2.00 degrees"),
])
def test_label_on_another_grid(cohort: Path, affine: Callable[[np.ndarray], np.ndarray], phrase: str) -> None:
    rewrite_image(cohort / LABEL, lambda a: a, affine)
    assert_problem(the_error(cohort), "error", "case_001", LABEL, phrase)


def test_label_of_another_shape(cohort: Path) -> None:
    rewrite_image(cohort / LABEL, lambda a: a[:, :, :15])
    assert_problem(the_error(cohort), "error", "case_001", LABEL, "shape 20x24x15 here vs 20x24x16")


def test_channel_on_another_grid(two_channels: Path) -> None:
    rewrite_image(two_channels / "imagesTr/case_002_0001.nii.gz", lambda a: a, _shift_origin)
    problem = the_error(two_channels)
    assert_problem(problem, "error", "case_002", "imagesTr/case_002_0001.nii.gz", "origin")
    assert "imagesTr/case_002_0000.nii.gz" in problem.what


# --- clinical table --------------------------------------------------------------------------------------------------

HEADER = "case_id,hand_function,age"


def test_missing_clinical_table(cohort: Path) -> None:
    (cohort / "clinical.csv").unlink()
    assert_problem(the_error(cohort), "error", None, "clinical.csv", "missing")


def test_unreadable_clinical_table(cohort: Path) -> None:
    (cohort / "clinical.csv").write_bytes(b"\xff\xfe\x00case\x00\x81\x8d")
    assert_problem(the_error(cohort), "error", None, "clinical.csv", "cannot be read")


def test_clinical_table_without_target_column(cohort: Path) -> None:
    write_clinical(cohort, "case_id,grip", "case_000,good", "case_001,good", "case_002,good", "case_003,good")
    assert_problem(the_error(cohort), "error", None, "clinical.csv", "hand_function missing")


def test_duplicate_clinical_rows(cohort: Path) -> None:
    write_clinical(cohort, HEADER, "case_000,good,1", "case_001,impaired,2", "case_001,good,2", "case_002,good,3",
                   "case_003,impaired,4")
    assert_problem(the_error(cohort), "error", "case_001", "clinical.csv", "has 2 rows")


def test_case_without_clinical_row(cohort: Path) -> None:
    write_clinical(cohort, HEADER, "case_000,good,1", "case_001,impaired,2", "case_003,impaired,4")
    assert_problem(the_error(cohort), "error", "case_002", "clinical.csv", "no row")


def test_clinical_row_for_an_unknown_case(cohort: Path) -> None:
    (cohort / "clinical.csv").write_text((cohort / "clinical.csv").read_text() + "case_099,good,50\n")
    assert_problem(the_warning(cohort, "not in imagesTr"), "warning", "case_099", "clinical.csv", "not in imagesTr")
    assert not errors(cohort)


def test_unknown_hand_function_value(cohort: Path) -> None:
    write_clinical(cohort, HEADER, "case_000,good,1", "case_001,impared,2", "case_002,good,3", "case_003,impaired,4")
    assert_problem(the_error(cohort), "error", "case_001", "clinical.csv", "'impared' is not a known value")


def test_missing_hand_function_value(cohort: Path) -> None:
    write_clinical(cohort, HEADER, "case_000,good,1", "case_001,,2", "case_002,good,3", "case_003,impaired,4")
    problem = the_warning(cohort, "left out of the hand-function model")
    assert_problem(problem, "warning", "case_001", "clinical.csv", "no hand_function value")
    assert not errors(cohort)


def test_single_clinical_class(cohort: Path) -> None:
    write_clinical(cohort, HEADER, "case_000,good,1", "case_001,good,2", "case_002,0,3", "case_003,good,4")
    assert_problem(the_warning(cohort, "nothing to tell apart"), "warning", None, "clinical.csv",
                   "every labelled case (4) is 'good'")


def test_unbalanced_clinical_classes() -> None:
    targets = {f"c{i}": "good" for i in range(9)} | {"c9": "impaired"}
    (problem,) = balance_problems(targets, ClinicalSpec(), "clinical.csv")
    assert_problem(problem, "warning", None, "clinical.csv", "only 1 of 10 labelled cases (10%) are 'impaired'")
    assert balance_problems(targets | {"c10": "1", "c11": "yes"}, ClinicalSpec(), "clinical.csv") == []


# --- k-space ---------------------------------------------------------------------------------------------------------


def test_missing_kspace_file(cohort: Path) -> None:
    (cohort / KSPACE).unlink()
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "k-space file is missing")


def test_missing_kspace_folder_is_one_problem(cohort: Path) -> None:
    shutil.rmtree(cohort / "kspace")
    assert_problem(the_error(cohort), "error", None, "kspace", "folder is missing")


def test_unreadable_kspace_file(cohort: Path) -> None:
    (cohort / KSPACE).write_bytes((cohort / KSPACE).read_bytes()[:1000])
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "cannot be read as HDF5")


def test_kspace_file_without_kspace_dataset(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, drop=("kspace",))
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "no 'kspace' dataset")


def _kspace(root: Path) -> np.ndarray:
    with h5py.File(root / KSPACE, "r") as f:
        return f["kspace"][()]


def test_kspace_with_wrong_dimensions(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, kspace=_kspace(cohort)[:, 0])
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "must be 4D [slices, coils, H, W]")


def test_kspace_that_is_not_complex(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, kspace=np.abs(_kspace(cohort)))
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "must be complex")


def test_kspace_without_slice_attributes(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, drop=("slice_indices",))
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "slice_indices missing")


@pytest.mark.parametrize(("attrs", "phrase"), [
    ({"slice_indices": np.array([7, 8])}, "slice_indices has 2 entries but 'kspace' has 3 slices"),
    ({"slice_indices": np.array([15, 16, 17])}, "slice_indices 16, 17 are outside the image"),
    ({"slice_axis": 1}, "k-space matrix 20x24 does not match the image's axes other than slice_axis 1 (20x16)"),
    ({"slice_axis": 3}, "slice_axis is 3"),
])
def test_kspace_slices_that_do_not_fit_the_image(cohort: Path, attrs: dict, phrase: str) -> None:
    rewrite_kspace(cohort / KSPACE, attrs=attrs)
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, phrase)


@pytest.mark.parametrize(("name", "array", "phrase"), [
    ("mask", np.ones((24, 20), np.uint8), "'mask' has shape [24x20]"),
    ("mask", np.full((20, 24), 2, np.uint8), "'mask' is not binary"),
    ("mask", np.zeros(24, np.uint8), "'mask' is empty"),
    ("segmentation", np.zeros((2, 20, 24), np.uint8), "'segmentation' has shape [2x20x24]"),
    ("reconstruction_sense", np.ones((3, 24, 20), np.complex64), "'reconstruction_sense' has shape [3x24x20]"),
    ("sensitivity_map", np.ones((3, 2, 20, 24), np.complex64), "'sensitivity_map' has shape [3x2x20x24]"),
])
def test_kspace_companion_datasets(cohort: Path, name: str, array: np.ndarray, phrase: str) -> None:
    rewrite_kspace(cohort / KSPACE, **{name: array})
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, phrase)


def _central_slices(root: Path) -> np.ndarray:
    image = read_volume(root / IMAGE).data
    return image[:, :, 7:10].transpose(2, 0, 1).astype(np.complex64)


def test_sense_reference_matching_its_slices_passes(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, reconstruction_sense=_central_slices(cohort))
    assert not [p for p in check(cohort) if p.file == KSPACE]


def test_sense_reference_from_other_slices_is_warned_about(cohort: Path) -> None:
    rewrite_kspace(cohort / KSPACE, reconstruction_sense=_central_slices(cohort),
                   attrs={"slice_indices": np.array([0, 1, 2])})
    problem = the_warning(cohort, "SENSE reference")
    assert_problem(problem, "warning", "case_001", KSPACE, "hardly resembles the image slices")
    assert not errors(cohort)


def test_kspace_file_for_an_unknown_case(cohort: Path) -> None:
    shutil.copy(cohort / KSPACE, cohort / "kspace/case_042.h5")
    problem = the_warning(cohort, "not named after a case")
    assert_problem(problem, "warning", None, "kspace/case_042.h5", "not named after a case in imagesTr")


# --- cohort-wide spacing warnings ------------------------------------------------------------------------------------


def test_case_with_far_thicker_slices_is_warned_about(cohort: Path) -> None:
    for file in ("imagesTr/case_002_0000.nii.gz", "labelsTr/case_002.nii.gz"):
        rewrite_image(cohort / file, lambda a: a, lambda a: a @ np.diag([1.0, 1.0, 2.5, 1.0]))
    problem = the_warning(cohort, "away from the cohort's median")
    assert_problem(problem, "warning", "case_002", None, "median 2 x 2 x 2 mm")
    assert not errors(cohort)


def test_extreme_and_anisotropic_spacing() -> None:
    spacings = {"a": (1.0, 1.0, 1.0), "b": (0.2, 0.2, 7.0), "c": (1.0, 1.0, 1.0)}
    extreme, anisotropic, far = spacing_problems(spacings)
    assert_problem(extreme, "warning", "b", None, "outside 0.3-6.0 mm")
    assert_problem(anisotropic, "warning", "b", None, "more than 3x longer on one axis")
    assert_problem(far, "warning", "b", None, "more than 2x away from the cohort's median")


def test_spacing_warning_lists_several_cases() -> None:
    spacings = {f"case_{i}": (0.5, 0.5, 5.0) for i in range(7)}
    (anisotropic,) = spacing_problems(spacings)
    assert_problem(anisotropic, "warning", None, None, "7 cases (case_0, case_1, case_2, case_3, case_4 and 2 more)")
    assert spacing_problems({f"case_{i}": (1.0, 1.0, 1.2) for i in range(7)}) == []
