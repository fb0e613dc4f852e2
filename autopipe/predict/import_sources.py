"""Where `autopipe import` found the scans that `autopipe predict -i IN` reads: IN's import_sources.json.

`autopipe import` (autopipe.cohort.import_records) writes it into the folder it fills: IN itself for a plain
folder of images (`--images-only`), IN's parent for a cohort (IN = imagesTs or imagesTr). Predict reads it to
name BIDS derivatives by their subject and session (`--bids`) and to find the DICOM series a segmentation
object references (`--dicom-seg`). Every key below "cases" is optional; a missing file means "not imported".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autopipe.cohort.import_records import SOURCES_FILE
from autopipe.errors import AutopipeError
from autopipe.files import read_json


@dataclass(frozen=True)
class ImportSources:
    """import_sources.json as read: its path, the kind of source ("dicom" or "bids"), the source folder and
    case -> its entry ({"bids": {"sub": ..., "ses": ...}, "channels": {"0": {"series_instance_uid": ...,
    "files": [paths relative to `source`]}}})."""

    path: Path
    kind: str
    source: Path
    cases: dict[str, dict] = field(default_factory=dict)

    def bids_entities(self, case: str) -> dict[str, str]:
        """The case's BIDS entities ({"sub": "01", "ses": "pre"}, ses optional); {} when not recorded."""
        entities = self.cases.get(case, {}).get("bids") or {}
        return {k: str(v) for k, v in entities.items() if k in ("sub", "ses") and v not in (None, "")}

    def dicom_files(self, case: str, channel: int = 0) -> list[Path]:
        """The absolute paths of the DICOM files channel `channel` of `case` was imported from; [] if unknown."""
        entry = (self.cases.get(case, {}).get("channels") or {}).get(str(channel)) or {}
        return [self.source / name for name in entry.get("files") or []]


def find_import_sources(input_dir: Path) -> ImportSources | None:
    """The import_sources.json of `input_dir` or of its parent (in that order); None when neither has one.
    AutopipeError naming the file when it is damaged."""
    for folder in (input_dir, input_dir.parent):
        path = folder / SOURCES_FILE
        if path.is_file():
            value = read_json(path)
            if not (isinstance(value, dict) and isinstance(value.get("cases", {}), dict)):
                raise AutopipeError(f"{SOURCES_FILE} is not what `autopipe import` writes", where=str(path),
                                    fix="import the scans again with `autopipe import`, or delete the file")
            source = Path(str(value.get("source", folder))).expanduser()
            cases = {str(k): v if isinstance(v, dict) else {} for k, v in value.get("cases", {}).items()}
            return ImportSources(path, str(value.get("source_kind", "")), source, cases)
    return None
