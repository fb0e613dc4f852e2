"""`autopipe import` from a tree of DICOM files: one case per patient and study, its series as channels.

1. Every file's header is read (autopipe.cohort.dicom_series); files that are not DICOM are skipped with a
   note, and the images are grouped by patient (PatientID), study (StudyInstanceUID) and series.
2. Each series is matched to a channel by rules the user can print and replace
   (autopipe.cohort.sequence_rules); a series is used only when it is one regular 3D stack (no missing
   slices, one orientation, one size). The mapping, series -> channel or why not, is a note of the result
   that `autopipe import` prints for the user to confirm.
3. A study becomes a case when every channel has a series. Its series are converted to NIfTI; channels other
   than channel 0 that lie on another grid are resampled onto channel 0's (linear, in world coordinates), when
   they share its FrameOfReferenceUID (the same scanner coordinates); otherwise the case is skipped.
   A DICOM Segmentation object (SEG) that references a case's channel-0 series becomes its lesion mask
   (labelsTr, 0/1 on channel 0's grid); cases with a mask go to imagesTr, the others to imagesTs.

Case ids are pseudonymous: patients are numbered P001, P002, ... in the order of a SHA-256 hash of their
PatientID, and a patient's studies S1, S2, ... by StudyDate and time, so case P002_S1 is the second patient's
first study, the same for the same source every time. The identifiers stay in the identities file beside the
cohort (autopipe.cohort.import_records).

Why SimpleITK and not dcm2niix: SimpleITK (with GDCM inside) is a dependency already, reads the exact file
list we give it in the order we sorted (along the slice normal), and leaves the geometry to us: the affine is
computed from ImagePositionPatient, ImageOrientationPatient and PixelSpacing (`series_affine`) and checked
against what ITK read, so the NIfTI affine is exactly the headers'. dcm2niix is a separate binary with more
heuristics for vendor quirks and enhanced multi-frame files, but it chooses its own grouping and file
names, which would hide the series -> channel mapping this importer shows. Enhanced multi-frame files are
therefore skipped with advice to convert them with dcm2niix, or to export classic single-frame images.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autopipe.cohort.dicom_series import (
    ENHANCED_SOP_CLASSES,
    IMAGE,
    LPS_TO_RAS,
    MULTIFRAME,
    NO_GEOMETRY,
    SEGMENTATION,
    DicomFile,
    HeaderScan,
    Series,
    group_series,
    scan_headers,
    series_affine,
    series_problem,
    slice_thickness,
    sort_slices,
)
from autopipe.cohort.image_io import Volume, resample_onto, write_volume
from autopipe.cohort.import_records import ImportedCase, ImportOptions, ImportResult, Skipped
from autopipe.cohort.sequence_rules import Rules, choice_key, compile_rules, match_series, rules_json
from autopipe.errors import AutopipeError, first_line
from autopipe.files import write_json
from autopipe.progress import track

ENDING = ".nii.gz"
LESION_SEGMENT = re.compile(r"lesion|wmh|white matter hyperintens|plaque|pvl|\bms\b", re.IGNORECASE)


@dataclass
class Channel:
    """The series chosen for one channel of a case, its slices in order and its affine."""

    series: Series
    slices: list[DicomFile]
    affine: np.ndarray


@dataclass
class Study:
    """One patient's study: its pseudonymous ids, its series, and the series chosen per channel."""

    case_id: str
    patient: str
    series: list[Series]
    channels: dict[int, Channel] = field(default_factory=dict)
    mask: np.ndarray | None = None
    mask_from: Series | None = None

    @property
    def first(self) -> DicomFile:
        return self.series[0].first


def print_rules(path: Path | None) -> None:
    """Print the rules that map series to channels (the default ones, or those of `path`) as JSON."""
    print(json.dumps(rules_json(path), indent=2))


def import_dicom(source: Path, scratch: Path, options: ImportOptions) -> ImportResult:
    """Convert the DICOM tree `source` into a cohort (or, with options.images_only, a folder of images) in
    `scratch`; returns what was written and skipped."""
    channels, images_only, progress, rules_path = options.channels, options.images_only, options.progress, options.rules
    rules = compile_rules(rules_json(rules_path), channels,
                          str(rules_path) if rules_path else "the default rules")
    result = ImportResult("dicom", source, scratch)
    scan = scan_headers(source, progress)
    result.skipped += file_skips(scan)
    all_series = group_series(scan.files)
    segmentations = [s for s in all_series if s.first.kind == SEGMENTATION]
    studies = make_studies([s for s in all_series if s.first.kind != SEGMENTATION])
    mapping = [f"series -> channel ({rules.origin}; `autopipe import SRC X --show-rules` prints the default "
               "rules, --rules FILE replaces them):"]
    for study in studies:
        result.skipped += choose_channels(study, rules, channels, mapping)
    complete = [s for s in studies if len(s.channels) == len(channels)]
    result.skipped += attach_masks(complete, segmentations, source, channels[0], images_only)
    result.notes.append("\n".join(mapping))
    if complete and not images_only and not any(s.mask is not None for s in complete):
        raise AutopipeError(f"none of the {len(complete)} case(s) found has a lesion mask (a DICOM SEG object "
                            f"that references its {channels[0]} series), so there is nothing to train on",
                            where=str(source), fix="add --images-only to import new patients to predict on, or "
                                                    "add the lesion masks (DICOM SEG) to the source")
    for study in track(complete, len(complete), "converting series", enabled=progress):
        try:
            result.cases.append(write_case(study, source, scratch, images_only))
        except ConversionError as exc:
            result.skipped.append(Skipped(study.case_id, str(exc)))
    if not images_only and result.cases:
        write_dataset_json(scratch, result.cases, channels)
    return result


def file_skips(scan: HeaderScan) -> list[Skipped]:
    """One entry for the files that are not DICOM (a few named), one per unreadable DICOM file."""
    skipped = []
    if scan.not_dicom:
        named = ", ".join(scan.not_dicom[:3]) + (", ..." if len(scan.not_dicom) > 3 else "")
        skipped.append(Skipped(f"{len(scan.not_dicom)} file(s) that are not DICOM ({named})",
                               "no DICOM header (no 'DICM' marker): ignored"))
    skipped += [Skipped(path, f"unreadable DICOM file ({why})") for path, why in scan.unreadable.items()]
    return skipped


def make_studies(series: list[Series]) -> list[Study]:
    """The series grouped by patient and study, with pseudonymous ids (see the module docstring), sorted by id."""
    by_patient: dict[str, dict[str, list[Series]]] = {}
    for s in series:
        by_patient.setdefault(s.first.patient_id, {}).setdefault(s.first.study_uid, []).append(s)
    patients = sorted(by_patient, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    width = max(3, len(str(len(patients))))
    studies = []
    for n, patient in enumerate(patients, 1):
        pseudonym = f"P{n:0{width}d}"
        ordered = sorted(by_patient[patient].values(),
                         key=lambda group: (group[0].first.study_date, group[0].first.study_time,
                                            group[0].first.study_uid))
        for m, group in enumerate(ordered, 1):
            group.sort(key=lambda s: (s.first.series_number or 0, s.uid))
            studies.append(Study(f"{pseudonym}_S{m}", pseudonym, group))
    return studies


def series_skip_reason(series: Series) -> str | None:
    """Why a series can never be a channel, whatever the rules say (pure); None for a set of images."""
    kinds = {f.kind for f in series.files}
    if MULTIFRAME in kinds:
        first = next(f for f in series.files if f.kind == MULTIFRAME)
        name = ENHANCED_SOP_CLASSES.get(first.sop_class, "a multi-frame image")
        return (f"enhanced multi-frame file ({name}): not supported yet; convert it with dcm2niix "
                "(pip install dcm2niix) and import the NIfTI, or export the series as classic single-frame images")
    if kinds == {NO_GEOMETRY}:
        return "images without patient position/orientation (secondary capture or screenshot): not a scan"
    if IMAGE not in kinds:
        return f"not an image ({_sop_name(series.first.sop_class)})"
    return None


def choose_channels(study: Study, rules: Rules, channels: tuple[str, ...], mapping: list[str]) -> list[Skipped]:
    """Match the study's series to channels and choose one per channel (study.channels); returns what was skipped
    and appends one line per series, in series order, to `mapping`."""
    skipped: list[Skipped] = []
    lines: dict[str, str] = {}
    candidates: dict[int, list[tuple[Channel, str]]] = {}
    for series in study.series:
        what = f"{study.case_id} {series.label()}"
        images = [f for f in series.files if f.kind == IMAGE]
        why = series_skip_reason(series)
        if why is None and len(images) == 1:
            why = series_problem(images)
        match = None
        if why is None:
            match = match_series(series.first.texts, series.first.image_type, rules)
            why = None if match.channel is not None else match.why
        if why is None:
            why = series_problem(images)
        if why is not None:
            skipped.append(Skipped(what, why))
            lines[series.uid] = f"  {what} ({len(series.files)} file(s)) -> -   {why}"
            continue
        ordered = sort_slices(images)
        candidates.setdefault(match.channel, []).append((Channel(series, ordered, series_affine(ordered)), match.why))
    for index, found in sorted(candidates.items()):
        found.sort(key=lambda c: choice_key(len(c[0].slices), slice_thickness(c[0].affine),
                                            c[0].series.first.series_number))
        best, because = found[0]
        study.channels[index] = best
        lines[best.series.uid] = (f"  {study.case_id} {best.series.label()} ({len(best.slices)} slices) -> "
                                  f"{channels[index]}   ({because})")
        for other, _ in found[1:]:
            why = (f"also {channels[index]}, but {best.series.label()} was chosen (most slices, then thinnest "
                   "slices, then the latest series)")
            what = f"{study.case_id} {other.series.label()}"
            skipped.append(Skipped(what, why))
            lines[other.series.uid] = f"  {what} ({len(other.slices)} slices) -> -   {why}"
    mapping += [lines[s.uid] for s in study.series]
    missing = [channels[i] for i in range(len(channels)) if i not in study.channels]
    if missing:
        skipped.append(Skipped(study.case_id, f"no usable series for channel(s) {', '.join(missing)}: the study "
                                              "is not imported (see the series -> channel table)"))
        mapping.append(f"  {study.case_id}: not imported, no series for {', '.join(missing)}")
        study.channels.clear()
    return skipped


def attach_masks(studies: list[Study], segmentations: list[Series], source: Path, channel0: str,
                 images_only: bool) -> list[Skipped]:
    """Read the SEG objects that reference a case's channel-0 series into study.mask; returns what was skipped."""
    by_series = {s.channels[0].series.uid: s for s in studies}
    skipped = []
    for seg in sorted(segmentations, key=lambda s: -(s.first.series_number or 0)):
        what = f"segmentation {seg.label()}"
        study = next((by_series[uid] for uid in seg.first.referenced_series if uid in by_series), None)
        if images_only:
            skipped.append(Skipped(what, "lesion masks are not imported with --images-only"))
        elif study is None:
            skipped.append(Skipped(what, f"references no series chosen as a case's channel 0 ({channel0})"))
        elif study.mask is not None:
            skipped.append(Skipped(f"{study.case_id} {what}", f"{study.case_id} has a mask already, from "
                                                                f"{study.mask_from.label()}"))  # type: ignore[union-attr]
        else:
            try:
                study.mask = seg_mask(source / seg.first.path, study.channels[0])
                study.mask_from = seg
            except Exception as exc:  # highdicom raises many types for odd objects
                skipped.append(Skipped(f"{study.case_id} {what}", f"cannot be read as a lesion mask: "
                                                                    f"{first_line(exc)}"))
    return skipped


class ConversionError(Exception):
    """A series or mask that could not be converted; the message says why."""


def seg_mask(path: Path, channel: Channel) -> np.ndarray:
    """A DICOM SEG's lesion segments as a uint8 0/1 volume on the channel's grid (i, j, k).

    Frames are mapped to the channel's slices by ReferencedSOPInstanceUID, or, when the SEG references other
    instances (e.g. a copy of the series), by their ImagePositionPatient. The segments whose label says lesion
    (lesion, WMH, plaque, ...) are used, all of them when none does.
    """
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    labels = {int(item.SegmentNumber): str(item.get("SegmentLabel", "")) for item in seg.SegmentSequence}
    segments = [n for n, label in labels.items() if LESION_SEGMENT.search(label)] or sorted(labels)
    uids = [f.sop_instance_uid for f in channel.slices]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    if referenced & set(uids):
        pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=segments, combine_segments=False,
                                                   assert_missing_frames_are_empty=True)
        stack = np.asarray(pixels).reshape(len(uids), channel.slices[0].rows, channel.slices[0].columns, -1)
        return np.ascontiguousarray((stack > 0).any(axis=-1).transpose(2, 1, 0)).astype(np.uint8)
    return mask_by_position(seg, channel, segments)


def mask_by_position(seg: object, channel: Channel, segments: list[int]) -> np.ndarray:
    """Map a SEG's frames onto the channel's slices by each frame's ImagePositionPatient."""
    shape = (channel.slices[0].columns, channel.slices[0].rows, len(channel.slices))
    frames = np.asarray(seg.pixel_array)  # type: ignore[attr-defined]
    frames = frames.reshape(-1, *frames.shape[-2:])
    if frames.shape[1:] != (shape[1], shape[0]):
        raise ConversionError(f"its frames are {frames.shape[1]}x{frames.shape[2]}, the series' images "
                              f"{shape[1]}x{shape[0]}")
    to_voxel = np.linalg.inv(channel.affine)
    mask = np.zeros(shape, np.uint8)
    shared = (seg.get("SharedFunctionalGroupsSequence") or [{}])[0]  # type: ignore[attr-defined]
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):  # type: ignore[attr-defined]
        identification = item.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        number = int(identification[0].ReferencedSegmentNumber)
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        voxel = to_voxel @ np.append(LPS_TO_RAS @ position, 1.0)
        k = int(round(voxel[2]))
        if np.abs(voxel[:3] - [0, 0, k]).max() > 0.01 or not 0 <= k < shape[2]:
            raise ConversionError(f"frame {index + 1} lies at no slice of {channel.series.label()}")
        if number in segments:
            mask[:, :, k] |= (frames[index] > 0).T.astype(np.uint8)
    return mask


def read_series(source: Path, channel: Channel) -> np.ndarray:
    """The voxels of a chosen series (i, j, k), read by SimpleITK in our slice order; ConversionError on failure."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(source / f.path) for f in channel.slices])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ConversionError(f"{channel.series.label()} cannot be read by SimpleITK: {first_line(exc)}") from None
    data = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    expected = (channel.slices[0].columns, channel.slices[0].rows, len(channel.slices))
    origin = np.asarray(image.GetOrigin())
    if data.shape != expected or np.abs(origin - channel.slices[0].position).max() > 1e-3:
        raise ConversionError(f"{channel.series.label()}: SimpleITK read a grid of {data.shape} at {origin}, the "
                              f"headers say {expected} at {channel.slices[0].position}")
    return data


def write_case(study: Study, source: Path, scratch: Path, images_only: bool) -> ImportedCase:
    """Convert a study's chosen series (and mask) into scratch; returns the case as recorded."""
    labelled = study.mask is not None and not images_only
    folder = "" if images_only else ("imagesTr/" if labelled else "imagesTs/")
    reference = study.channels[0]
    written, notes = {}, []
    for index, channel in sorted(study.channels.items()):
        data = read_series(source, channel)
        if index and (data.shape != _shape(reference) or not np.allclose(channel.affine, reference.affine,
                                                                            atol=1e-4)):
            frames = {channel.slices[0].frame_of_reference, reference.slices[0].frame_of_reference}
            if len(frames) > 1:
                raise ConversionError(f"{channel.series.label()} lies on another grid than channel 0 and in another "
                                      "frame of reference (FrameOfReferenceUID): register it onto channel 0 first, "
                                      "or import channel 0 alone")
            data = resample_onto(Volume(data, channel.affine), _shape(reference), reference.affine)
            notes.append(f"channel {index} resampled onto channel 0's grid")
        name = f"{folder}{study.case_id}_{index:04d}{ENDING}"
        write_volume(scratch / name, Volume(data, reference.affine))
        written[index] = name
    label = None
    if labelled:
        label = f"labelsTr/{study.case_id}{ENDING}"
        write_volume(scratch / label, Volume(study.mask, reference.affine), dtype=np.uint8)  # type: ignore[arg-type]
    came_from = " + ".join(c.series.label() for _, c in sorted(study.channels.items()))
    if label:
        came_from += f"; mask from segmentation {study.mask_from.label()}"  # type: ignore[union-attr]
    if notes:
        came_from += f" ({'; '.join(notes)})"
    return ImportedCase(study.case_id, study.patient, written, label, came_from, case_source(study), identity(study))


def case_source(study: Study) -> dict:
    """import_sources.json's entry of a case: per channel its series and files (relative, in slice order)."""
    entry: dict = {"channels": {str(i): {"series_instance_uid": c.series.uid, "files": [f.path for f in c.slices]}
                                for i, c in sorted(study.channels.items())}}
    if study.mask_from is not None:
        entry["segmentation"] = {"series_instance_uid": study.mask_from.uid,
                                 "files": [f.path for f in study.mask_from.files]}
    return entry


def identity(study: Study) -> dict:
    """The private identifiers of a case's study (for the identities file beside the cohort)."""
    first = study.channels[0].slices[0]
    found = {"PatientID": first.patient_id, "PatientName": first.patient_name, "StudyDate": first.study_date,
             "StudyInstanceUID": first.study_uid}
    if first.accession:
        found["AccessionNumber"] = first.accession
    return found


def write_dataset_json(scratch: Path, cases: list[ImportedCase], channels: tuple[str, ...]) -> Path:
    """dataset.json of the imported cohort; "patients" keeps a patient's studies in one cross-validation fold."""
    training = [c for c in cases if c.label is not None]
    return write_json(scratch / "dataset.json", {
        "channel_names": {str(i): name for i, name in enumerate(channels)},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(training),
        "file_ending": ENDING,
        "patients": {c.case_id: c.patient for c in training},
    })


def _shape(channel: Channel) -> tuple[int, int, int]:
    return (channel.slices[0].columns, channel.slices[0].rows, len(channel.slices))


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else f"SOP class {uid or 'unknown'}"
