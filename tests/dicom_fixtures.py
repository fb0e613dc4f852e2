"""Synthetic DICOM for the import tests: MR series written slice by slice with pydicom from known volumes, on a
known oblique grid, and DICOM SEG objects made with highdicom.

A SeriesSpec says where a series lies (origin, row/column directions, spacings, all LPS as in DICOM); its
`ras_affine` is the NIfTI affine an exact import must give, computed here independently of the importer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def oblique_directions(angle_deg: float = 17.0) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines (LPS) of an oblique plane: axial tilted about x, then rotated about z."""
    a, b = np.deg2rad(angle_deg), np.deg2rad(angle_deg / 2)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    turn = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    rotation = turn @ tilt
    return rotation[:, 0], rotation[:, 1]


@dataclass
class SeriesSpec:
    """One synthetic series: its grid, voxels (i, j, k) and header values."""

    description: str
    number: int
    volume: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.2, 2.5)  # along i (columns), j (rows), k (slices), mm
    origin: tuple[float, float, float] = (-10.0, -12.0, 30.0)
    angle: float = 17.0
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M")
    uid: str = field(default_factory=generate_uid)

    def directions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        row, col = oblique_directions(self.angle)
        return row, col, np.cross(row, col)

    def position(self, k: int) -> np.ndarray:
        row, col, normal = self.directions()
        return np.asarray(self.origin) + k * self.spacing[2] * normal

    def ras_affine(self) -> np.ndarray:
        row, col, normal = self.directions()
        lps = np.eye(4)
        lps[:3, 0], lps[:3, 1] = row * self.spacing[0], col * self.spacing[1]
        lps[:3, 2], lps[:3, 3] = normal * self.spacing[2], self.origin
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@dataclass
class Patient:
    """Who a synthetic study belongs to."""

    patient_id: str
    name: str
    study_date: str
    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference: str = field(default_factory=generate_uid)


def volume(shape: tuple[int, int, int] = (20, 24, 10), seed: int = 0) -> np.ndarray:
    """A volume of distinct int16 values (a ramp plus noise), so any flipped or shuffled slice shows."""
    rng = np.random.default_rng(seed)
    i, j, k = np.indices(shape)
    return (100 + 3 * i + 7 * j + 50 * k + rng.integers(0, 3, shape)).astype(np.int16)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def slice_dataset(patient: Patient, spec: SeriesSpec, k: int, orientation: tuple[np.ndarray, np.ndarray] | None = None,
                  instance: int | None = None) -> Dataset:
    """Slice k of a series as a classic MR Image Storage dataset (explicit VR little endian)."""
    row, col, _ = spec.directions()
    if orientation is not None:
        row, col = orientation
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient.patient_id, patient.name, "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = patient.study_uid, patient.study_date, "101500", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = f"ACC{patient.study_date}", ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = spec.uid, spec.number, spec.description
    ds.ProtocolName, ds.Modality, ds.Manufacturer = spec.description, "MR", "autopipe-tests"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = patient.frame_of_reference, ""
    ds.ImageType = list(spec.image_type)
    ds.InstanceNumber = k + 1 if instance is None else instance
    ds.ImagePositionPatient = [_ds(v) for v in spec.position(k)]
    ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
    ds.PixelSpacing = [_ds(spec.spacing[1]), _ds(spec.spacing[0])]  # between rows, between columns
    ds.SliceThickness = _ds(spec.spacing[2])
    pixels = np.ascontiguousarray(spec.volume[:, :, k].T)  # rows = j, columns = i
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def write_series(folder: Path, patient: Patient, spec: SeriesSpec, skip: tuple[int, ...] = (),
                 tilted: tuple[int, ...] = (), names: str = "IM{:04d}") -> list[Path]:
    """Write the series' slices (but those in `skip`; those in `tilted` in another orientation) as files named
    without extension, in a shuffled order of names; returns the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(spec.number).permutation(spec.volume.shape[2])
    paths = []
    for k in range(spec.volume.shape[2]):
        if k in skip:
            continue
        orientation = oblique_directions(spec.angle + 30) if k in tilted else None
        path = folder / names.format(int(order[k]))
        slice_dataset(patient, spec, k, orientation).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_localizer(folder: Path, patient: Patient, number: int) -> None:
    """A three-plane localizer: three 1-slice images in three orientations, ImageType LOCALIZER."""
    spec = SeriesSpec("localizer", number, volume((20, 24, 3)), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    planes = [(np.array([1.0, 0, 0]), np.array([0, 1.0, 0])), (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
              (np.array([0, 1.0, 0]), np.array([0, 0, -1.0]))]
    folder.mkdir(parents=True, exist_ok=True)
    for k, plane in enumerate(planes):
        slice_dataset(patient, spec, k, plane).save_as(folder / f"LOC{k}", enforce_file_format=True)


def write_enhanced(path: Path, patient: Patient, number: int) -> None:
    """The header of an Enhanced MR Image Storage file (multi-frame): enough to be recognized, not converted."""
    spec = SeriesSpec("FLAIR 3D enhanced", number, volume((4, 4, 2)))
    ds = slice_dataset(patient, spec, 0)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR
    ds.NumberOfFrames = 2
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, keyword)
    ds.PixelData = np.zeros((2, 4, 4), "<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_seg(path: Path, slice_paths: list[Path], mask: np.ndarray, label: str = "lesion") -> None:
    """A DICOM SEG (highdicom, binary) of `mask` (i, j, k on the series' grid) referencing the slices' files."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = sorted((pydicom.dcmread(p) for p in slice_paths), key=lambda d: int(d.InstanceNumber))
    frames = np.stack([np.ascontiguousarray(mask[:, :, int(d.InstanceNumber) - 1].T) for d in sources])
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=99,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="autopipe-tests",
        manufacturer_model_name="tests", software_versions="1", device_serial_number="1", omit_empty_frames=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)


def lesion_mask(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A small box lesion inside the volume, placed by `seed`."""
    mask = np.zeros(shape, np.uint8)
    i, j = 4 + seed % 5, 5 + seed % 7
    mask[i:i + 5, j:j + 6, 3:7] = 1
    return mask
