"""--dicom-seg: a mask on a scan converted from a DICOM series goes back onto that series' instances exactly."""

import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from autopipe.errors import AutopipeError
from autopipe.predict.dicom_seg import source_files, write_dicom_seg
from autopipe.predict.import_sources import find_import_sources

ROWS, COLUMNS, SLICES = 12, 16, 8
PIXEL_SPACING = (0.9, 0.8)  # between rows, between columns
SLICE_SPACING = 2.5


def write_series(folder, orientation, first_position):
    """An MR series of SLICES single-frame instances along the orientation's normal, written in shuffled file
    order with shuffled instance numbers; returns [(file name, SOPInstanceUID, slice index)]."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.random.default_rng(1).permutation(SLICES)
    written = []
    for k in range(SLICES):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, uid
        ds.Modality, ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "MR", "P1", "Test^P", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", "", "", ""
        ds.SeriesNumber, ds.InstanceNumber = 3, int(order[k]) + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(first_position) + k * SLICE_SPACING * normal]
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_SPACING), SLICE_SPACING
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLUMNS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (np.arange(ROWS * COLUMNS, dtype=np.uint16).reshape(ROWS, COLUMNS) + k).tobytes()
        name = f"im{order[k]:02d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
        written.append((name, uid, k))
    return written


def nifti_of_series(folder, path):
    """The series as NIfTI, the way a converter writes it (SimpleITK's series reader, as nnU-Net tools do)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    sitk.WriteImage(reader.Execute(), str(path))
    return nib.load(str(path))


def imported(tmp_path, orientation, first_position):
    source = tmp_path / "dicom"
    instances = write_series(source / "series3", orientation, first_position)
    images = tmp_path / "images"
    images.mkdir()
    scan = nifti_of_series(source / "series3", images / "c1_0000.nii.gz")
    (images / "import_sources.json").write_text(json.dumps({
        "source_kind": "dicom", "source": str(source),
        "cases": {"c1": {"channels": {"0": {"series_instance_uid": "1.2.3",
                                            "files": [f"series3/{name}" for name, _, _ in instances]}}}}}))
    return images, scan, instances


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)], ids=["axial", "sagittal"])
def test_the_segmentation_round_trips_exactly_onto_the_source_instances(tmp_path, orientation):
    images, scan, instances = imported(tmp_path, np.array(orientation, float), (-10.0, -20.0, 5.0))
    assert scan.shape == (COLUMNS, ROWS, SLICES)  # voxel (column, row, slice), as converters order them
    mask = np.zeros(scan.shape, np.uint8)
    mask[2:5, 3:9, 1:3] = 1  # a block, one voxel, a lesion at the grid's edge, and an empty slice (5)
    mask[10, 1, 4] = 1
    mask[COLUMNS - 1, ROWS - 2:, 6:] = 1
    files = source_files("c1", find_import_sources(images))
    out = write_dicom_seg(tmp_path / "out" / "c1_seg.dcm", mask, scan.affine, files, "c1", "3d_fullres")

    seg = hd.seg.segread(out)
    assert seg.SegmentationType == "BINARY" and seg.SegmentSequence[0].SegmentLabel == "lesion"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"  # SNOMED Lesion
    for _, uid, k in instances:  # SimpleITK sorts by position, so NIfTI slice k is the k-th position
        pixels = seg.get_pixels_by_source_instance([uid], segment_numbers=[1], assert_missing_frames_are_empty=True)
        assert np.array_equal(pixels[0, :, :, 0], mask[:, :, k].T), k  # DICOM frame (row, column)
    assert not list(out.parent.glob(".tmp_*"))


def test_the_writer_refuses_what_it_cannot_reference(tmp_path):
    images, scan, instances = imported(tmp_path, np.array((1, 0, 0, 0, 1, 0), float), (0.0, 0.0, 0.0))
    with pytest.raises(AutopipeError, match="c1.*no import_sources.json"):
        source_files("c1", None)
    with pytest.raises(AutopipeError, match="c2: import_sources.json names no DICOM series"):
        source_files("c2", find_import_sources(images))
    (tmp_path / "dicom" / "series3" / instances[0][0]).unlink()
    with pytest.raises(AutopipeError, match="1 of its 8 DICOM file"):
        source_files("c1", find_import_sources(images))
    files = [tmp_path / "dicom" / "series3" / name for name, _, _ in instances[1:]]
    shifted = scan.affine.copy()
    shifted[:3, 3] += 0.4  # half a voxel off: not the series' grid
    with pytest.raises(AutopipeError, match="does not fit its DICOM series"):
        write_dicom_seg(tmp_path / "c1_seg.dcm", np.zeros(scan.shape, np.uint8), shifted, files, "c1", "2d")
    assert not (tmp_path / "c1_seg.dcm").exists() and pydicom.dcmread(files[0]).Modality == "MR"
