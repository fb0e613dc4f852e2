"""`autopipe predict --dicom-seg`: a lesion mask as a DICOM Segmentation object (OUT/CASE_seg.dcm) that references
the DICOM series channel 0 of the case was imported from, so PACS viewers overlay it on the source scan.

The mask lies on the scan's own grid (export_prediction writes the input's exact header), and a NIfTI converted
from a DICOM series holds that series' voxels. Each source instance's pixels are located in the mask by geometry,
not by file order: pixel (row r, column c) of an instance is at ImagePositionPatient + c * PixelSpacing[1] *
ImageOrientationPatient[:3] + r * PixelSpacing[0] * ImageOrientationPatient[3:] in LPS patient coordinates,
which is diag(-1, -1, 1) @ RAS; the inverse NIfTI affine turns that into voxel indices. Any flip or permutation
of axes between the NIfTI and the series is so handled; a series whose pixels do not fall on the mask's voxels
(another grid, a localizer) is refused rather than resampled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autopipe import __version__
from autopipe.errors import AutopipeError
from autopipe.files import atomic_path
from autopipe.predict.import_sources import ImportSources

SEG_SUFFIX = "_seg.dcm"
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
_TOLERANCE = 0.1  # voxels: how far a source pixel centre may lie from a mask voxel centre


def source_files(case: str, sources: ImportSources | None) -> list[Path]:
    """The DICOM files of channel 0 of `case`, as `autopipe import` recorded them; AutopipeError naming the case
    and what to do when the record or the files are missing."""
    fix = "import the scans with `autopipe import` from their DICOM folder, and predict on the folder it writes"
    if sources is None:
        raise AutopipeError(f"case {case}: --dicom-seg needs to know the DICOM series the scan came from, and the "
                            "input folder (and its parent) has no import_sources.json", fix=fix)
    files = sources.dicom_files(case, 0)
    if sources.kind != "dicom" or not files:
        raise AutopipeError(f"case {case}: import_sources.json names no DICOM series for channel 0",
                            where=str(sources.path), fix=fix)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise AutopipeError(f"case {case}: {len(missing)} of its {len(files)} DICOM file(s) are gone, e.g. "
                            f"{missing[0]}", where=str(sources.path),
                            fix="put the DICOM folder back where it was imported from, or import the scans again")
    return files


def mask_frames(mask: np.ndarray, affine: np.ndarray, datasets: list) -> np.ndarray:
    """The mask's pixels at each source instance: (instances, Rows, Columns) uint8, in the order of `datasets`
    (pydicom datasets of single-frame images with ImagePositionPatient, ImageOrientationPatient, PixelSpacing).
    ValueError naming the instance whose pixels are not on the mask's grid."""
    to_voxel = np.linalg.inv(np.asarray(affine, float))
    frames = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)), np.uint8)
    for index, ds in enumerate(datasets):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1 or (ds.Rows, ds.Columns) != frames.shape[1:]:
            raise ValueError(f"instance {ds.SOPInstanceUID} is not a single frame of {frames.shape[1:]} pixels")
        position = np.asarray(ds.ImagePositionPatient, float)
        orientation = np.asarray(ds.ImageOrientationPatient, float)
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
        rows, columns = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
        lps = (position[:, None, None] + orientation[:3, None, None] * column_spacing * columns
               + orientation[3:, None, None] * row_spacing * rows)
        ras = np.einsum("ij,jrc->irc", _LPS_FROM_RAS, lps)  # diag(-1, -1, 1) is its own inverse
        voxel = np.einsum("ij,jrc->irc", to_voxel[:3, :3], ras) + to_voxel[:3, 3, None, None]
        nearest = np.rint(voxel).astype(int)
        inside = all((nearest[k] >= 0).all() and (nearest[k] < mask.shape[k]).all() for k in range(3))
        if np.abs(voxel - nearest).max() > _TOLERANCE or not inside:
            raise ValueError(f"instance {ds.SOPInstanceUID} (ImagePositionPatient {list(position)}) does not lie on "
                             "the mask's voxel grid")
        frames[index] = mask[nearest[0], nearest[1], nearest[2]] > 0
    return frames


def write_dicom_seg(path: Path, mask: np.ndarray, affine: np.ndarray, files: list[Path], case: str,
                    configuration: str) -> Path:
    """A BINARY DICOM Segmentation with one segment "lesion" (SNOMED CT Morphologically Abnormal Structure /
    Lesion, automatic), referencing the source instances `files`, written atomically at `path`."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    try:
        datasets = [pydicom.dcmread(f) for f in files]
    except Exception as exc:  # pydicom raises many types for damaged files
        raise AutopipeError(f"case {case}: cannot read its DICOM series ({type(exc).__name__}: {exc})",
                            fix="import the scans again with `autopipe import`") from None
    datasets.sort(key=lambda ds: int(getattr(ds, "InstanceNumber", 0) or 0))
    try:
        frames = mask_frames(mask, affine, datasets)
    except (ValueError, AttributeError) as exc:
        raise AutopipeError(f"case {case}: the mask does not fit its DICOM series: {exc}",
                            fix="predict on the NIfTI `autopipe import` wrote from that series") from None
    algorithm = hd.AlgorithmIdentificationSequence(name="autopipe", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=_series_number(datasets[0]),
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="autopipe",
            manufacturer_model_name=f"autopipe {configuration}"[:64], software_versions=__version__,
            device_serial_number="none", series_description="autopipe lesion segmentation",
            content_description=f"lesions ({configuration})"[:64])
    except (ValueError, TypeError, AttributeError) as exc:  # highdicom's checks of the source instances
        raise AutopipeError(f"case {case}: its DICOM series cannot be referenced by a segmentation ({exc})",
                            fix="check that channel 0 was imported from one complete series") from None
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return path


def _series_number(source: object) -> int:
    """A series number near the source's, so viewers list the segmentation beside it."""
    number = int(getattr(source, "SeriesNumber", 0) or 0)
    return number + 1000 if number < 2**31 - 1000 else 1
