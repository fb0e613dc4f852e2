"""`autopipe check` on how files are stored: gzip integrity, header geometry, complex values, case-id collisions,
NaN k-space samples, and reads outside the cohort. Each test breaks one thing in a valid tiny cohort."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from autopipe.cohort.problem import format_problem
from tests.cohort.test_check import IMAGE, KSPACE, LABEL, assert_problem, check, rewrite_image, the_error, the_warning


def _no_crash(root: Path) -> None:
    assert not [p for p in check(root) if "could not be checked" in p.what], [format_problem(p) for p in check(root)]


def test_bytes_damaged_inside_a_gzip_file(cohort: Path) -> None:
    data = bytearray((cohort / IMAGE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    (cohort / IMAGE).write_bytes(bytes(data))
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, "gzip integrity check fails")


def test_a_damaged_gzip_trailer(cohort: Path) -> None:
    data = bytearray((cohort / LABEL).read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the uncompressed data
    (cohort / LABEL).write_bytes(bytes(data))
    assert_problem(the_error(cohort), "error", "case_001", LABEL, "gzip integrity check fails")


def test_nan_samples_in_kspace(cohort: Path) -> None:
    with h5py.File(cohort / KSPACE, "r+") as f:
        values = f["kspace"][()]
        values[1, 0, 3, :5] = np.nan
        f["kspace"][...] = values
    assert_problem(the_error(cohort), "error", "case_001", KSPACE, "5 k-space samples are NaN or infinite (slice 1")


def test_a_sheared_affine_is_a_warning(cohort: Path) -> None:
    def shear(a: np.ndarray) -> np.ndarray:
        a[0, 1] = 0.3 * a[1, 1]
        return a

    for path in (IMAGE, LABEL):
        rewrite_image(cohort / path, lambda a: a, shear)
    sheared = [p for p in check(cohort) if "sheared" in p.what]
    assert {(p.severity, p.file) for p in sheared} == {("warning", IMAGE), ("warning", LABEL)}
    assert "16.7 degrees off" in sheared[0].what


def _set_header(path: Path, change) -> None:
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    header = img.header.copy()
    change(header)
    nib.save(nib.Nifti1Image(data, None, header), path)


def test_zero_spacing_and_a_nan_affine_are_errors_not_crashes(cohort: Path) -> None:
    def zero(header) -> None:
        affine = header.get_best_affine()
        affine[:3, 0] = 0.0
        header.set_sform(affine, code=1)

    _set_header(cohort / IMAGE, zero)
    _no_crash(cohort)
    assert [p.what for p in check(cohort) if p.file == IMAGE and "spacing of zero" in p.what]

    def nan(header) -> None:
        header.set_sform(np.full((4, 4), np.nan), code=1)

    _set_header(cohort / LABEL, nan)
    _no_crash(cohort)
    assert [p for p in check(cohort) if p.file == LABEL and "NaN or infinite" in p.what and p.severity == "error"]


def test_qform_and_sform_that_disagree(cohort: Path) -> None:
    img = nib.load(cohort / IMAGE)
    moved = img.affine.copy()
    moved[:3, 3] += 30.0
    img.set_qform(moved, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, cohort / IMAGE)
    assert_problem(the_warning(cohort, "qform and sform disagree"), "warning", "case_001", IMAGE, "30.0 mm")


def test_a_complex_image(cohort: Path) -> None:
    rewrite_image(cohort / IMAGE, lambda a: a.astype(np.complex64) * (1 + 1j))
    assert_problem(the_error(cohort), "error", "case_001", IMAGE, "complex values")


def test_case_ids_that_collide_without_letter_case(cohort: Path) -> None:
    for folder, suffix in (("imagesTr", "_0000.nii.gz"), ("labelsTr", ".nii.gz")):
        source = cohort / folder / f"case_001{suffix}"
        (cohort / folder / f"CASE_001{suffix}").write_bytes(source.read_bytes())
    (cohort / "kspace" / "CASE_001.h5").write_bytes((cohort / KSPACE).read_bytes())
    dataset = json.loads((cohort / "dataset.json").read_text())
    dataset["numTraining"] += 1
    (cohort / "dataset.json").write_text(json.dumps(dataset))
    clinical = cohort / "clinical.csv"
    clinical.write_text(clinical.read_text() + "CASE_001,good,40\n")
    found = [p for p in check(cohort) if "only in upper/lower case" in p.what]
    assert len(found) == 1 and {found[0].case} <= {"case_001", "CASE_001"}, [format_problem(p) for p in check(cohort)]


def test_every_read_outside_the_cohort_is_a_warning(cohort: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "clinical.csv").write_text((cohort / "clinical.csv").read_text())
    dataset = json.loads((cohort / "dataset.json").read_text())
    dataset["clinical"]["file"] = "../elsewhere/clinical.csv"
    (cohort / "dataset.json").write_text(json.dumps(dataset))
    image = outside / "case_002_0000.nii.gz"
    image.write_bytes((cohort / "imagesTr" / "case_002_0000.nii.gz").read_bytes())
    (cohort / "imagesTr" / "case_002_0000.nii.gz").unlink()
    (cohort / "imagesTr" / "case_002_0000.nii.gz").symlink_to(image)
    warnings = [p for p in check(cohort) if "outside the cohort folder" in p.what]
    assert {p.file for p in warnings} == {"dataset.json clinical file", "imagesTr/case_002_0000.nii.gz"}
