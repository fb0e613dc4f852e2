"""A BIDS dataset into a cohort: anat/ images as channels, derivatives' lesion masks as labels, participants.tsv
as the clinical table.

Library: BIDS file names are parsed by autopipe.cohort.bids_names (forty lines following the specification's
naming rules) rather than with pybids. autopipe reads only file-name entities, one participants.tsv and a glob
of derivatives/; pybids would add SQLAlchemy, formulaic, the BIDS validator and a database index for that.

What is read (the source is never written to):

- Cases: `sub-<label>/[ses-<label>/]anat/`. Each subject, or each session of a subject, is a case with id
  `sub<label>[_ses<label>]` (sub-01 ses-02 -> sub01_ses02; BIDS labels are alphanumeric and pseudonymous
  already, so ids carry them). A subject's sessions share its patient (the subject label), which dataset.json
  "patients" records so that cross-validation keeps them in one fold.
- Channels: `--channels FLAIR,T1w` are suffixes in anat/ (.nii.gz or .nii). Of several files of one suffix
  (acq-, rec-, run-, ...), bids_names.SELECTION_RULE picks one: fewest other entities, then the highest run
  (a repeat is usually the better scan), then .nii.gz, then by name; the others are listed as skipped.
  Other channels on another grid of the same field of view are resampled onto channel 0's (linear, in world
  coordinates; preprocessing registers them later); one that covers under MIN_COVERAGE of it is skipped.
- Lesion masks (MASK_RULE): `derivatives/<pipeline>/sub-*/[ses-*/]anat/` files named `..._desc-<desc>_mask`,
  `..._label-<desc>_mask` or `..._desc-<desc>_dseg` (.nii.gz or .nii), `<desc>` from `--lesion-desc`. A mask
  must lie on channel 0's grid (as `autopipe check` judges grids; never resampled) and hold only 0 and 1;
  otherwise it is skipped with why. Cases with a mask go to imagesTr/labelsTr, those without to imagesTs.
  Derivatives that autopipe wrote itself (`predict --bids`; GeneratedBy autopipe) are never read as labels.
- participants.tsv, with `--hand-column`: clinical.csv, one row per training case (case_id, then every
  participants.tsv column but participant_id; a subject's sessions repeat its row; BIDS "n/a" becomes an
  empty cell, autopipe's "missing"), declared in dataset.json "clinical" with that column as the target.

Images are copied, never linked: .nii.gz files byte for byte, .nii files gzipped (their bytes unchanged inside),
so every file ends in dataset.json's ".nii.gz". The identities file records participant_id (BIDS data are
usually pseudonymized already; the file is kept private all the same, beside the cohort).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopipe.cohort.bids_names import LABEL, SELECTION_RULE, BidsName, choose, naming_problem, parse_bids_name
from autopipe.cohort.check_images import grid_differences  # the same rule `autopipe check` gates by
from autopipe.cohort.clinical import hand_function_value
from autopipe.cohort.dataset import ClinicalSpec
from autopipe.cohort.image_io import (
    Header,
    UnreadableImage,
    Volume,
    grid_coverage,
    read_header,
    read_volume,
    resample_onto,
    write_volume,
)
from autopipe.cohort.import_records import ImportedCase, ImportOptions, ImportResult, Skipped
from autopipe.errors import AutopipeError
from autopipe.files import write_json, write_text_atomic
from autopipe.progress import track

FILE_ENDING = ".nii.gz"
IMAGE_EXTENSIONS = (".nii.gz", ".nii")
PARTICIPANTS = "participants.tsv"
CASE_COLUMN = "case_id"
MISSING = {"n/a", ""}
MIN_COVERAGE = 0.5  # share of channel 0's field of view another channel must cover to be resampled onto it
MASK_RULE = ("derivatives/*/sub-*/[ses-*/]anat/*_desc-{desc}_mask, *_label-{desc}_mask or *_desc-{desc}_dseg "
             "(.nii.gz or .nii), on channel 0's grid, values 0 and 1 only")


@dataclass
class _Case:
    """One subject or session being imported: its chosen files and, once found, its lesion mask."""

    sub: str
    ses: str | None
    files: list[tuple[BidsName, Path]]  # one per channel, in channel order
    header: Header  # channel 0's grid
    mask: Path | None = None
    mask_from: str = ""  # the derivatives pipeline the mask came from
    resampled: tuple[int, ...] = ()  # channels on another grid than channel 0's, resampled onto it

    @property
    def case_id(self) -> str:
        return case_id(self.sub, self.ses)

    @property
    def place(self) -> str:
        return f"sub-{self.sub}" + (f" ses-{self.ses}" if self.ses else "")


def case_id(sub: str, ses: str | None) -> str:
    """sub-01 ses-02 -> sub01_ses02; sub-01 without sessions -> sub01."""
    return f"sub{sub}" + (f"_ses{ses}" if ses else "")


def import_bids(source: Path, scratch: Path, options: ImportOptions) -> ImportResult:
    """Import the BIDS dataset `source` into `scratch` (see the module docstring): images, masks, dataset.json and
    clinical.csv; the caller writes the records and moves `scratch` into place."""
    channels = tuple(options.channels)
    if not channels:
        raise AutopipeError("no channels given", fix="give --channels, e.g. FLAIR or FLAIR,T1w (anat/ suffixes)")
    result = ImportResult("bids", source, scratch)
    participants = None
    if options.hand_column and not options.images_only:
        participants = read_participants(source, options.hand_column)
    cases = []
    folders = anat_folders(source, result.skipped)
    for sub, ses, anat in track(folders, len(folders), "bids", enabled=options.progress):
        case = _find_case(source, sub, ses, anat, channels, result.skipped)
        if case is not None:
            cases.append(case)
    cases = _drop_collisions(cases, result.skipped)
    result.notes.append(f"of several files of one suffix, the import used the first by: {SELECTION_RULE}")
    if not options.images_only:
        masks = _attach_masks(source, cases, options.lesion_desc, result.skipped)
        result.notes.append("lesion masks: " + MASK_RULE.format(desc=options.lesion_desc))
        if cases and not any(c.mask for c in cases):
            raise AutopipeError(
                f"none of the {len(cases)} case(s) has a usable lesion mask ({masks} mask file(s) found, none "
                "usable); masks are read from " + MASK_RULE.format(desc=options.lesion_desc), where=str(source),
                fix="add --images-only to import new patients for `autopipe predict`, or provide the lesion masks "
                    "in derivatives/ (--lesion-desc names their desc- entity)")
    if not options.images_only and not options.hand_column and (source / PARTICIPANTS).is_file():
        result.notes.append(f"{PARTICIPANTS} was not imported: give --hand-column to make it clinical.csv")
    result.cases = [_imported(case, options.images_only) for case in cases]
    clinical = None
    if participants is not None and options.hand_column and result.cases:  # checked before anything is copied
        clinical = clinical_rows(result.cases, participants, options.hand_column)
    for case, imported in track(list(zip(cases, result.cases, strict=True)), len(cases), "copy",
                                enabled=options.progress):
        for index, (_, path) in enumerate(case.files):
            if index in case.resampled:
                data = resample_onto(read_volume(path, np.float32), case.header.shape, case.header.affine)
                write_volume(scratch / imported.channels[index], Volume(data, case.header.affine))
            else:
                copy_image(path, scratch / imported.channels[index])
        if imported.label is not None and case.mask is not None:
            copy_image(case.mask, scratch / imported.label)
    if not options.images_only and result.cases:
        write_dataset(scratch, channels, result.cases, clinical, options.hand_column)
    return result


def anat_folders(source: Path, skipped: list[Skipped]) -> list[tuple[str, str | None, Path]]:
    """(subject label, session label or None, anat folder) of every subject and session, sorted."""
    found = []
    for subject in sorted(p for p in source.glob("sub-*") if p.is_dir()):
        sub = _label(subject.name, "sub")
        if sub is None:
            skipped.append(Skipped(subject.name, "a subject folder is named sub-<label>, letters and digits only"))
            continue
        sessions = sorted(p for p in subject.glob("ses-*") if p.is_dir())
        places = [(None, subject / "anat")] if (subject / "anat").is_dir() or not sessions else []
        for session in sessions:
            ses = _label(session.name, "ses")
            if ses is None:
                skipped.append(Skipped(f"{subject.name}/{session.name}",
                                       "a session folder is named ses-<label>, letters and digits only"))
            else:
                places.append((ses, session / "anat"))
        for ses, anat in places:
            if anat.is_dir():
                found.append((sub, ses, anat))
            else:
                skipped.append(Skipped(anat.parent.relative_to(source).as_posix(), "no anat/ folder"))
    return found


def _label(folder: str, key: str) -> str | None:
    """The label of a `sub-<label>` or `ses-<label>` folder; None when it breaks BIDS naming."""
    label = folder[len(key) + 1:]
    return label if folder.startswith(f"{key}-") and LABEL.match(label) else None


def anat_images(source: Path, sub: str, ses: str | None, anat: Path,
                skipped: list[Skipped]) -> dict[str, list[tuple[BidsName, Path]]]:
    """suffix -> the NIfTI images of one anat/ folder; misnamed files (and ones of another subject) are skipped."""
    images: dict[str, list[tuple[BidsName, Path]]] = {}
    for path in sorted(anat.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        what = path.relative_to(source).as_posix()
        name = parse_bids_name(path.name)
        if name is None:
            skipped.append(Skipped(what, naming_problem(path.name)))
            continue
        if name.sub != sub or name.ses != ses:
            skipped.append(Skipped(what, "its sub-/ses- entities do not match the folder it is in"))
            continue
        if name.extension in IMAGE_EXTENSIONS:
            images.setdefault(name.suffix, []).append((name, path))
    return images


def _find_case(source: Path, sub: str, ses: str | None, anat: Path, channels: tuple[str, ...],
               skipped: list[Skipped]) -> _Case | None:
    """The case of one anat/ folder: one file per channel, all on channel 0's grid; None (skipped, with why)."""
    images = anat_images(source, sub, ses, anat, skipped)
    place = f"sub-{sub}" + (f" ses-{ses}" if ses else "")
    files = []
    for index, suffix in enumerate(channels):
        candidates = images.get(suffix, [])
        if not candidates:
            found = ", ".join(sorted(images)) or "no NIfTI images"
            skipped.append(Skipped(place, f"no {suffix} image in anat/ (channel {index}; found: {found})"))
            return None
        chosen, others = choose([name for name, _ in candidates])
        paths = {name.name: path for name, path in candidates}
        for other in others:
            skipped.append(Skipped(paths[other.name].relative_to(source).as_posix(),
                                   f"not used: {chosen.name} was chosen for {suffix} (rule: {SELECTION_RULE})"))
        files.append((chosen, paths[chosen.name]))
    headers = []
    for _, path in files:
        try:
            header = read_header(path)
        except UnreadableImage as exc:
            skipped.append(Skipped(path.relative_to(source).as_posix(), f"cannot be read as an image ({exc})"))
            return None
        if len(header.shape) != 3:
            skipped.append(Skipped(path.relative_to(source).as_posix(),
                                   f"is {len(header.shape)}D (shape {header.shape}); a 3D volume is expected"))
            return None
        headers.append(header)
    resampled = []
    for index, ((name, _), header) in enumerate(zip(files[1:], headers[1:], strict=True), start=1):
        if not grid_differences(headers[0], header):
            continue
        coverage = grid_coverage(headers[0].shape, headers[0].affine, header.shape, header.affine)
        if coverage < MIN_COVERAGE:
            skipped.append(Skipped(place, f"{name.name} covers only {coverage:.0%} of {files[0][0].name}'s field of "
                                          "view (another position or coordinate frame): register it onto channel 0 "
                                          "first, or import channel 0 alone"))
            return None
        resampled.append(index)
    return _Case(sub, ses, files, headers[0], resampled=tuple(resampled))


def _drop_collisions(cases: list[_Case], skipped: list[Skipped]) -> list[_Case]:
    """Case ids that differ only in letter case would overwrite each other on macOS and Windows: keep the first."""
    seen: dict[str, str] = {}
    kept = []
    for case in cases:
        first = seen.setdefault(case.case_id.lower(), case.case_id)
        if first != case.case_id:
            skipped.append(Skipped(case.place, f"its case id {case.case_id} differs from {first} only in letter "
                                               "case: the two would overwrite each other on macOS and Windows"))
        else:
            kept.append(case)
    return kept


def lesion_masks(source: Path, desc: str, skipped: list[Skipped]) -> list[tuple[BidsName, Path]]:
    """Every file under derivatives/ named like a lesion mask (MASK_RULE's names), sorted by path. autopipe's own
    predictions (`predict --bids` into derivatives/) are skipped: a model must not learn from its own output."""
    found = []
    for pipeline in sorted(p for p in (source / "derivatives").glob("*") if p.is_dir()):
        if generated_by_autopipe(pipeline):
            skipped.append(Skipped(pipeline.relative_to(source).as_posix(), "autopipe's own predictions (its "
                                   "dataset_description.json says GeneratedBy autopipe): not used as lesion masks"))
            continue
        for pattern in ("sub-*/anat/*", "sub-*/ses-*/anat/*"):
            for path in pipeline.glob(pattern):
                name = parse_bids_name(path.name)
                if name is not None and path.is_file() and is_lesion_mask(name, desc):
                    found.append((name, path))
    return sorted(found, key=lambda item: item[1].as_posix())


def generated_by_autopipe(pipeline: Path) -> bool:
    """Whether a derivatives folder's dataset_description.json names autopipe in GeneratedBy."""
    try:
        description = json.loads((pipeline / "dataset_description.json").read_text(encoding="utf-8"))
        return any(isinstance(g, dict) and g.get("Name") == "autopipe" for g in description.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def is_lesion_mask(name: BidsName, desc: str) -> bool:
    """`*_desc-<desc>_mask`, `*_label-<desc>_mask` or `*_desc-<desc>_dseg`, .nii.gz or .nii."""
    if name.extension not in IMAGE_EXTENSIONS:
        return False
    if name.suffix == "mask":
        return name.entities.get("desc") == desc or name.entities.get("label") == desc
    return name.suffix == "dseg" and name.entities.get("desc") == desc


def _mask_order(name: BidsName, case: _Case) -> tuple:
    """Masks naming channel 0's own acquisition entities first, then _mask before _dseg."""
    own = case.files[0][0].entities
    extra = {k: v for k, v in name.entities.items() if k not in ("sub", "ses", "desc", "label", "space", "res", "den")}
    return any(own.get(k) != v for k, v in extra.items()), name.suffix != "mask"


def _attach_masks(source: Path, cases: list[_Case], desc: str, skipped: list[Skipped]) -> int:
    """Give each case the first of its masks that is on channel 0's grid and 0/1; skip the rest with why. Returns
    how many mask files were found."""
    by_place: dict[tuple[str, str | None], list[tuple[BidsName, Path]]] = {}
    found = lesion_masks(source, desc, skipped)
    for name, path in found:
        by_place.setdefault((name.sub, name.ses), []).append((name, path))
    known = {(c.sub, c.ses): c for c in cases}
    for (sub, ses), masks in by_place.items():
        case = known.get((sub, ses))
        if case is None:
            for _, path in masks:
                skipped.append(Skipped(path.relative_to(source).as_posix(),
                                       f"no case imported for sub-{sub}" + (f" ses-{ses}" if ses else "")))
            continue
        for _, path in sorted(masks, key=lambda item: _mask_order(item[0], case)):
            what = path.relative_to(source).as_posix()
            if case.mask is not None:
                skipped.append(Skipped(what, f"not used: {case.mask.relative_to(source).as_posix()} is this "
                                             "case's lesion mask"))
                continue
            why = mask_problem(path, case.header)
            if why:
                skipped.append(Skipped(what, why))
            else:
                case.mask, case.mask_from = path, path.relative_to(source / "derivatives").parts[0]
    return len(found)


def mask_problem(path: Path, reference: Header) -> str | None:
    """Why a lesion mask cannot label the case whose channel 0 has grid `reference`; None when it can."""
    try:
        header = read_header(path)
        differences = grid_differences(reference, header)
        if differences:
            return (f"not on the grid of the case's channel 0 ({'; '.join(differences)}); masks are not "
                    "resampled: export it on that scan's grid")
        data = np.asarray(read_volume(path).data)
    except UnreadableImage as exc:
        return f"cannot be read as an image ({exc})"
    if np.issubdtype(data.dtype, np.inexact) and not np.all(np.isfinite(data)):
        return "holds NaN or infinite values; a lesion mask holds 0 and 1"
    values = np.unique(data)
    other = values[(values != 0) & (values != 1)]
    if other.size:
        shown = ", ".join(f"{v:g}" for v in other[:5]) + (" ..." if other.size > 5 else "")
        return (f"holds values other than 0 and 1 ({shown}); a lesion mask is binary: export the lesion label "
                "alone as 0/1")
    return None


def read_participants(source: Path, hand_column: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """participants.tsv's columns and participant_id -> row; AutopipeError when it or the hand column is missing."""
    path = source / PARTICIPANTS
    if not path.is_file():
        raise AutopipeError(f"--hand-column {hand_column} needs {PARTICIPANTS}, and the dataset has none",
                            where=str(source), fix=f"add {PARTICIPANTS}, or leave out --hand-column")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    reader = csv.DictReader(lines, delimiter="\t")
    header = [h.strip() for h in reader.fieldnames or []]
    if hand_column not in header:
        raise AutopipeError(f"column {hand_column!r} not found (columns: {', '.join(header) or 'none'})",
                            where=str(path), fix="give one of these columns to --hand-column")
    if "participant_id" not in header:
        raise AutopipeError("column 'participant_id' missing (BIDS requires it first)", where=str(path),
                            fix="name the first column participant_id, with values like sub-01")
    rows = {}
    for row in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        pid = row.get("participant_id", "")
        rows[pid if pid.startswith("sub-") else f"sub-{pid}"] = row
    return header, rows


def clinical_rows(cases: list[ImportedCase], participants: tuple[list[str], dict[str, dict[str, str]]],
                  hand_column: str) -> tuple[list[str], list[list[str]]]:
    """clinical.csv's header and rows for the training cases; AutopipeError for hand-function values autopipe
    cannot read (BIDS "n/a" becomes an empty cell)."""
    header, rows = participants
    columns = [c for c in header if c not in ("participant_id", CASE_COLUMN)]
    spec = ClinicalSpec(target_column=hand_column)
    table, bad = [], []
    for case in cases:
        if case.label is None:
            continue
        row = rows.get(case.identity["participant_id"], {})
        values = ["" if row.get(c, "").lower() in MISSING else row.get(c, "") for c in columns]
        try:
            hand_function_value(row.get(hand_column, ""), spec)
        except ValueError:
            bad.append(f"{case.identity['participant_id']}: {row[hand_column]!r}")
        table.append([case.case_id, *values])
    if bad:
        raise AutopipeError(f"{hand_column} holds values autopipe cannot read as hand function: {', '.join(bad[:5])}",
                            where=PARTICIPANTS, fix=f"use {spec.negative}/{spec.positive} or 0/1, n/a when unknown")
    return [CASE_COLUMN, *columns], table


def _imported(case: _Case, images_only: bool) -> ImportedCase:
    """What one case becomes: its files in the cohort (relative to it), patient, source and identity."""
    folder = "" if images_only else ("imagesTr/" if case.mask else "imagesTs/")
    written = {index: f"{folder}{case.case_id}_{index:04d}{FILE_ENDING}" for index in range(len(case.files))}
    label = f"labelsTr/{case.case_id}{FILE_ENDING}" if case.mask is not None and not images_only else None
    entities = {"sub": case.sub, **({"ses": case.ses} if case.ses else {})}
    came_from = case.place + ": " + " + ".join(name.name for name, _ in case.files)
    if case.resampled:
        came_from += f" (channel {', '.join(map(str, case.resampled))} resampled onto channel 0's grid)"
    if label:
        came_from += f"; mask from derivatives/{case.mask_from}"
    return ImportedCase(case.case_id, case.sub, written, label, came_from, source={"bids": entities},
                        identity={"participant_id": f"sub-{case.sub}"})


def copy_image(source: Path, destination: Path) -> Path:
    """A .nii.gz copied byte for byte; a .nii gzipped (its bytes unchanged inside). Never a link."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.name.endswith(".nii.gz"):
        shutil.copyfile(source, destination)
    else:
        with source.open("rb") as raw, gzip.GzipFile(destination, "wb", mtime=0) as packed:
            shutil.copyfileobj(raw, packed)
    return destination


def write_dataset(scratch: Path, channels: tuple[str, ...], cases: list[ImportedCase],
                  clinical: tuple[list[str], list[list[str]]] | None, hand_column: str | None) -> None:
    """dataset.json (with "patients" and, given clinical rows, "clinical") and clinical.csv."""
    dataset = {"channel_names": {str(i): name for i, name in enumerate(channels)},
               "labels": {"background": 0, "lesion": 1},
               "numTraining": sum(c.label is not None for c in cases),
               "file_ending": FILE_ENDING,
               "patients": {c.case_id: c.patient for c in cases}}
    if clinical is not None and hand_column:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(clinical[0])
        writer.writerows(clinical[1])
        write_text_atomic(scratch / "clinical.csv", text.getvalue())
        dataset["clinical"] = {"file": "clinical.csv", "case_column": CASE_COLUMN, "target_column": hand_column}
    write_json(scratch / "dataset.json", dataset)
