"""evaluate_cases and friends on tiny NIfTI files written to tmp_path."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autopipe.errors import AutopipeError
from autopipe.evaluate.evaluation import crossval_summary, evaluate_cases, format_table, pairs_from_folders
from autopipe.evaluate.metrics import aggregate

AFFINE = np.diag([2.0, 1.0, 1.0, 1.0])  # 2 x 1 x 1 mm voxels


def write(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases. a: reference label 1 on 2 voxels (+ label 2, not a lesion), prediction value 3 on one of them.
    b: prediction equals the reference."""
    ref_a = np.zeros((4, 4, 4))
    ref_a[0, 0, 0:2] = 1
    ref_a[3, 3, 3] = 2
    pred_a = np.zeros((4, 4, 4))
    pred_a[0, 0, 0] = 3
    ref_b = np.zeros((4, 4, 4))
    ref_b[1:3, 1:3, 1] = 1
    write(tmp_path / "ref" / "a.nii.gz", ref_a)
    write(tmp_path / "ref" / "b.nii", ref_b)
    write(tmp_path / "pred" / "a.nii.gz", pred_a)
    write(tmp_path / "pred" / "b.nii.gz", ref_b)
    return tmp_path / "pred", tmp_path / "ref"


def test_pairs_from_folders_match_by_case_name(folders: tuple[Path, Path]) -> None:
    pred_dir, ref_dir = folders
    pairs = pairs_from_folders(pred_dir, ref_dir)
    assert [(case, pred.name, ref.name) for case, pred, ref in pairs] == [
        ("a", "a.nii.gz", "a.nii.gz"), ("b", "b.nii.gz", "b.nii")]


def test_pairs_from_folders_errors(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, ref_dir = folders
    write(pred_dir / "stray.nii.gz", np.zeros((2, 2, 2)))
    with pytest.raises(AutopipeError, match="no reference: stray"):
        pairs_from_folders(pred_dir, ref_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AutopipeError, match="no CASE.nii.gz predictions"):
        pairs_from_folders(tmp_path / "empty", ref_dir)


def test_evaluate_cases(folders: tuple[Path, Path]) -> None:
    result = evaluate_cases(pairs_from_folders(*folders), lesion_labels=(1,))
    a, b = result["cases"]["a"], result["cases"]["b"]
    # a: |P| = 1, |R| = 2 (label 2 is not a lesion), overlap 1: Dice 2/3; volumes of 2 mm^3 voxels.
    assert a["dice"] == pytest.approx(2 / 3)
    assert a["ref_volume_ml"] == pytest.approx(0.004) and a["avd_ml"] == pytest.approx(0.002)
    # R->P distances: 0 and 1 mm (axis 2 is 1 mm), linear 95th percentile 0.95; P->R: 0.
    assert a["hd95_mm"] == pytest.approx(0.95)
    assert b["dice"] == 1.0 and b["hd95_mm"] == 0.0
    assert result["mean"]["dice"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(result["definitions"]) == set(a)


def test_evaluate_cases_counts_other_lesion_labels_when_asked(folders: tuple[Path, Path]) -> None:
    result = evaluate_cases(pairs_from_folders(*folders), lesion_labels=(1, 2))
    assert result["cases"]["a"]["ref_lesions"] == 2


def test_evaluate_cases_rejects_a_prediction_off_the_reference_grid(tmp_path: Path) -> None:
    ref = write(tmp_path / "ref.nii.gz", np.ones((3, 3, 3)))
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    pred = write(tmp_path / "pred.nii.gz", np.ones((3, 3, 3)), shifted)
    with pytest.raises(AutopipeError, match="case c7") as error:
        evaluate_cases([("c7", pred, ref)], lesion_labels=(1,))
    assert "pred.nii.gz" in str(error.value) and "ref.nii.gz" in str(error.value)
    assert "reference's grid" in str(error.value)
    other_shape = write(tmp_path / "small.nii.gz", np.ones((3, 3, 2)))
    with pytest.raises(AutopipeError, match="same grid"):
        evaluate_cases([("c7", other_shape, ref)], lesion_labels=(1,))


def test_format_table_lists_cases_and_shows_nan_as_dash(folders: tuple[Path, Path]) -> None:
    result = evaluate_cases(pairs_from_folders(*folders), lesion_labels=(1,))
    result["cases"]["b"]["hd95_mm"] = math.nan
    table = format_table(result)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["case", "Dice", "VOE"]
    assert lines[2].startswith("a ") and lines[3].startswith("b ")
    assert "0.667" in lines[2] and " - " in lines[3]
    assert lines[-2].startswith("mean") and lines[-1].startswith("std")
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_crossval_summary_pools_cases_and_spreads_fold_means() -> None:
    fold0 = [{"dice": 1.0}, {"dice": 0.5}]
    fold1 = [{"dice": 0.0}]
    results = {1: {"cases": {"c": fold1[0]}, "mean": aggregate(fold1)},
               0: {"cases": {"a": fold0[0], "b": fold0[1]}, "mean": aggregate(fold0)}}
    summary = crossval_summary(results)
    assert summary["folds"] == [0, 1]
    assert summary["pooled"]["dice"]["mean"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert summary["pooled"]["dice"]["n"] == 3
    assert summary["across_folds"]["dice"]["mean"] == pytest.approx(0.375)  # (0.75 + 0) / 2
    assert summary["across_folds"]["dice"]["std"] == pytest.approx(0.375)
