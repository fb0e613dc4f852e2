"""Predictions are written on the scan's own grid: header, affine, codes and orientation survive unchanged."""

import nibabel as nib
import numpy as np
import pytest

from autopipe.errors import AutopipeError
from autopipe.predict.export import write_like
from autopipe.predict.new_cases import input_cases


def lps_scan(path):
    affine = np.array([[-0.9, 0, 0, 90.3], [0, -1.1, 0.05, 110.7], [0, 0, 3.0, -40.2], [0, 0, 0, 1]])
    image = nib.Nifti1Image(np.random.default_rng(0).normal(size=(7, 6, 5)).astype(np.float32), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, str(path))
    return path


def test_write_like_keeps_the_reference_header(tmp_path):
    reference = lps_scan(tmp_path / "scan_0000.nii.gz")
    mask = np.zeros((7, 6, 5), np.uint8)
    mask[1, 2, 3] = 1
    out = write_like(tmp_path / "scan.nii.gz", mask, reference, np.uint8)
    written, ref = nib.load(out), nib.load(reference)
    assert np.array_equal(written.affine, ref.affine)
    assert np.array_equal(written.get_qform(), ref.get_qform()) and np.array_equal(written.get_sform(), ref.get_sform())
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert nib.aff2axcodes(written.affine) == ("L", "P", "S")
    assert written.get_data_dtype() == np.uint8 and np.array_equal(np.asanyarray(written.dataobj), mask)
    assert not list(tmp_path.glob(".tmp_*"))


def test_write_like_refuses_another_shape(tmp_path):
    reference = lps_scan(tmp_path / "scan_0000.nii.gz")
    with pytest.raises(ValueError, match="differs"):
        write_like(tmp_path / "scan.nii.gz", np.zeros((7, 6, 4), np.uint8), reference, np.uint8)


def test_input_cases_groups_channels_and_names_what_is_missing(tmp_path):
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(AutopipeError, match=r"b has channels \[0\]"):
        input_cases(tmp_path, 2)
    (tmp_path / "b_0001.nii.gz").write_bytes(b"")
    cases = input_cases(tmp_path, 2)
    assert sorted(cases) == ["a", "b"] and cases["a"][1].name == "a_0001.nii.gz"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AutopipeError, match="no images"):
        input_cases(empty, 1)
    with pytest.raises(AutopipeError, match="not found"):
        input_cases(tmp_path / "missing", 1)
