"""What `autopipe import` was asked for (ImportOptions) and what it did: the cases it wrote, what it skipped
and why, and where each case came from.

Both importers (autopipe.cohort.import_dicom, autopipe.cohort.import_bids) build an ImportResult; this
module writes its records, each atomically:

- DEST/import_report.json: every case written (its channels and label, what it came from) and every
  series, file or subject skipped, with why; also printed as a table.
- DEST/import_sources.json: case -> where its files came from, without identities: BIDS entities
  ({"bids": {"sub": "01", "ses": "pre"}}) or DICOM series ({"channels": {"0": {"series_instance_uid": ...,
  "files": [paths relative to the source]}}}). `autopipe predict --bids` names its derivatives by it, and
  `--dicom-seg` finds the series to reference.
- DEST.identities.json, beside DEST and not inside it: case -> the patient's identifiers (DICOM PatientID,
  PatientName, StudyDate, ...; BIDS participant_id). Case ids are pseudonymous, so the cohort folder can
  be shared without it; keep this file private.

DEST is a cohort folder (raw_data/DatasetXXX_Name) or, with `--images-only`, a plain folder of
CASE_0000.nii.gz files for `autopipe predict -i`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from autopipe.files import write_json

REPORT_FILE = "import_report.json"
SOURCES_FILE = "import_sources.json"
IDENTITIES_SUFFIX = ".identities.json"


@dataclass(frozen=True)
class ImportOptions:
    """What `autopipe import` was asked for (see autopipe.arguments.import_arguments)."""

    kind: str = "auto"  # "auto", "dicom" or "bids"
    images_only: bool = False
    rules: Path | None = None
    show_rules: bool = False
    channels: tuple[str, ...] = ("FLAIR",)
    hand_column: str | None = None
    lesion_desc: str = "lesion"
    progress: bool = True


@dataclass(frozen=True)
class ImportedCase:
    """One case written: its pseudonymous id and patient, files (relative to DEST) and origins."""

    case_id: str
    patient: str  # pseudonymous patient id: a patient's cases (BIDS sessions, studies) share it
    channels: dict[int, str]  # channel index -> image file written, relative to DEST
    label: str | None  # the lesion mask written, relative to DEST (None: unlabelled, in imagesTs)
    came_from: str  # one line for the report: "sub-01 ses-pre", "series 3 'FLAIR 3D' + series 5 'T1 MPRAGE'"
    source: dict = field(default_factory=dict)  # import_sources.json's entry (no identities)
    identity: dict = field(default_factory=dict)  # the identities file's entry (private)


@dataclass(frozen=True)
class Skipped:
    """Something in the source not imported: what it is (a path or a series) and why."""

    what: str
    why: str


@dataclass
class ImportResult:
    """Everything one import did; `kind` is "dicom" or "bids"."""

    kind: str
    source: Path
    destination: Path
    cases: list[ImportedCase] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the rules that mapped series to channels

    @property
    def identities_path(self) -> Path:
        return identities_path(self.destination)


def identities_path(destination: Path) -> Path:
    """The private identities file of a cohort: beside it, never inside it."""
    return destination.parent / f"{destination.name}{IDENTITIES_SUFFIX}"


def write_records(result: ImportResult, folder: Path | None = None) -> list[Path]:
    """Write the report and sources into `folder` (default: the destination); returns the paths written. Call it on
    the scratch folder before it is moved into place, and `write_identities` after."""
    folder = result.destination if folder is None else folder
    report = {
        "kind": result.kind,
        "source": str(result.source),
        "imported": [{"case": c.case_id, "patient": c.patient, "channels": {str(k): v for k, v in c.channels.items()},
                      "label": c.label, "from": c.came_from} for c in result.cases],
        "skipped": [asdict(s) for s in result.skipped],
        "notes": result.notes,
    }
    sources = {"source_kind": result.kind, "source": str(result.source),
               "cases": {c.case_id: c.source for c in result.cases}}
    return [write_json(folder / REPORT_FILE, report), write_json(folder / SOURCES_FILE, sources)]


def write_identities(result: ImportResult) -> Path:
    """The private identities file, beside the destination (see the module docstring), readable by its owner only."""
    path = write_json(result.identities_path, {c.case_id: c.identity for c in result.cases})
    path.chmod(0o600)
    return path


def format_table(result: ImportResult) -> str:
    """The import as a terminal table: one line per case, then what was skipped and why."""
    width = max([6, *(len(c.case_id) + 2 for c in result.cases)])
    lines = [f"{'case':<{width}}{'patient':<12}{'label':<7}from", "-" * (width + 40)]
    for c in result.cases:
        lines.append(f"{c.case_id:<{width}}{c.patient:<12}{'yes' if c.label else 'no':<7}{c.came_from}")
    if result.skipped:
        lines.append(f"skipped ({len(result.skipped)}):")
        lines += [f"  {s.what}: {s.why}" for s in result.skipped]
    labelled = sum(c.label is not None for c in result.cases)
    lines.append(f"{len(result.cases)} case(s) imported ({labelled} with a lesion mask), {len(result.skipped)} "
                 f"skipped -> {result.destination}")
    return "\n".join(lines)
