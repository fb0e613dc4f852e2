"""The cohort format: nnU-Net v2's raw layout plus autopipe's optional clinical and k-space files.

    DatasetNNN_Name/
        dataset.json               channel_names, labels, numTraining, file_ending (+ optional blocks)
        imagesTr/CASE_XXXX.ext     one file per case and channel (XXXX = 4-digit channel index)
        labelsTr/CASE.ext          lesion label map per training case
        imagesTs/CASE_XXXX.ext     optional test cases without labels
        clinical.csv               optional, declared as "clinical" in dataset.json
        kspace/CASE.h5             optional, declared as "kspace" in dataset.json

`load_dataset` reads dataset.json strictly enough that later stages can trust it; finding every
problem in a cohort (missing files, bad voxels, ...) is `autopipe check`'s job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from autopipe.cohort.image_io import SUPPORTED_ENDINGS
from autopipe.errors import AutopipeError

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class ClinicalSpec:
    """Where the clinical table is and which of its columns matter."""

    file: str = "clinical.csv"
    case_column: str = "case_id"
    target_column: str = "hand_function"
    positive: str = "impaired"  # the class predicted as 1
    negative: str = "good"


@dataclass(frozen=True)
class KspaceSpec:
    """Where the per-case k-space files are (see autopipe.cohort.kspace_file for their layout)."""

    folder: str = "kspace"


@dataclass(frozen=True)
class DatasetSpec:
    """A cohort's dataset.json, checked and typed."""

    root: Path
    channel_names: dict[int, str]
    labels: dict[str, int]
    num_training: int
    file_ending: str
    clinical: ClinicalSpec | None = None
    kspace: KspaceSpec | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def image_path(self, case_id: str, channel: int, folder: str = "imagesTr") -> Path:
        return self.root / folder / f"{case_id}_{channel:04d}{self.file_ending}"

    def label_path(self, case_id: str) -> Path:
        return self.root / "labelsTr" / f"{case_id}{self.file_ending}"

    def kspace_path(self, case_id: str) -> Path | None:
        return None if self.kspace is None else self.root / self.kspace.folder / f"{case_id}.h5"

    def clinical_path(self) -> Path | None:
        return None if self.clinical is None else self.root / self.clinical.file


def load_dataset(root: Path | str) -> DatasetSpec:
    """Read and validate `root/dataset.json`; raise AutopipeError naming the key that is wrong."""
    root = Path(root)
    path = root / "dataset.json"
    where = str(path)
    if not path.is_file():
        raise AutopipeError("dataset.json is missing", where=str(root),
                            fix="every cohort folder needs a dataset.json; see raw_data/README.md")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutopipeError(f"not valid JSON ({exc})", where=where, fix="repair the file's syntax") from exc
    if not isinstance(raw, dict):
        raise AutopipeError("must hold a JSON object", where=where)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if "channel_names" in missing and "modality" in raw:
        raise AutopipeError("uses nnU-Net v1 keys ('modality')", where=where,
                            fix="rename 'modality' to 'channel_names' and give 'labels' as name -> value "
                                "(nnU-Net v2 format)")
    if missing:
        raise AutopipeError(f"required key(s) missing: {', '.join(missing)}", where=where,
                            fix="add them; see raw_data/README.md for an example")
    return DatasetSpec(
        root=root,
        channel_names=_channel_names(raw["channel_names"], where),
        labels=_labels(raw["labels"], where),
        num_training=_positive_int(raw["numTraining"], "numTraining", where),
        file_ending=_file_ending(raw["file_ending"], where),
        clinical=_clinical(raw.get("clinical"), where),
        kspace=_kspace(raw.get("kspace"), where),
        raw=raw,
    )


def training_case_ids(spec: DatasetSpec, folder: str = "imagesTr") -> list[str]:
    """Case ids found in an images folder: the CASE part of CASE_XXXX<file_ending>, sorted."""
    directory = spec.root / folder
    if not directory.is_dir():
        return []
    cases = set()
    for path in directory.iterdir():
        if not path.name.endswith(spec.file_ending) or path.name.startswith("."):
            continue
        match = CHANNEL_FILE.match(path.name[: -len(spec.file_ending)])
        if match:
            cases.add(match.group("case"))
    return sorted(cases)


def _channel_names(value: object, where: str) -> dict[int, str]:
    if not isinstance(value, dict) or not value:
        raise AutopipeError("'channel_names' must be a non-empty object like {\"0\": \"FLAIR\"}", where=where)
    try:
        channels = {int(k): str(v) for k, v in value.items()}
    except ValueError as exc:
        raise AutopipeError("'channel_names' keys must be channel indices \"0\", \"1\", ...", where=where) from exc
    if sorted(channels) != list(range(len(channels))):
        raise AutopipeError(f"'channel_names' indices {sorted(channels)} must be 0..{len(channels) - 1}",
                            where=where, fix="number the channels consecutively from 0")
    return dict(sorted(channels.items()))


def _labels(value: object, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise AutopipeError("'labels' must be an object like {\"background\": 0, \"lesion\": 1}", where=where)
    labels = {}
    for name, val in value.items():
        if isinstance(val, bool) or not isinstance(val, int):
            raise AutopipeError(f"label '{name}' has value {val!r}; autopipe needs one integer per label "
                                "(region-based labels are not supported)", where=where)
        labels[str(name)] = val
    values = sorted(labels.values())
    if 0 not in values:
        raise AutopipeError("'labels' has no background (value 0)", where=where,
                            fix='add "background": 0')
    if values != list(range(len(values))):
        raise AutopipeError(f"label values {values} are not consecutive from 0", where=where,
                            fix="renumber the labels 0, 1, 2, ... in dataset.json and in the label files")
    return labels


def _positive_int(value: object, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AutopipeError(f"'{key}' must be a positive integer, got {value!r}", where=where)
    return value


def _file_ending(value: object, where: str) -> str:
    if value not in SUPPORTED_ENDINGS:
        raise AutopipeError(f"'file_ending' {value!r} is not supported", where=where,
                            fix=f"use one of {', '.join(SUPPORTED_ENDINGS)}")
    return str(value)


def _clinical(value: object, where: str) -> ClinicalSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ClinicalSpec(file=value)
    if isinstance(value, dict):
        known = set(ClinicalSpec.__dataclass_fields__)
        unknown = set(value) - known
        if unknown:
            raise AutopipeError(f"'clinical' has unknown key(s) {sorted(unknown)}", where=where,
                                fix=f"allowed: {sorted(known)}")
        return ClinicalSpec(**{k: str(v) for k, v in value.items()})
    raise AutopipeError("'clinical' must be a file name or an object", where=where)


def _kspace(value: object, where: str) -> KspaceSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        return KspaceSpec(folder=value)
    if isinstance(value, dict) and set(value) <= {"folder"}:
        return KspaceSpec(**{k: str(v) for k, v in value.items()})
    raise AutopipeError("'kspace' must be a folder name or {\"folder\": ...}", where=where)
