"""Where things live: the four working folders and how a DATASET argument names a cohort.

Defaults are folders under the current working directory, so nothing has to be set. The
environment variables AUTOPIPE_RAW, AUTOPIPE_PLANS, AUTOPIPE_PREPROCESSED and AUTOPIPE_RESULTS
(or the matching command-line options) move them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from autopipe.errors import AutopipeError

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


@dataclass(frozen=True)
class Workspace:
    """The four top-level folders autopipe reads and writes."""

    raw: Path
    plans: Path
    preprocessed: Path
    results: Path

    @classmethod
    def under(cls, base: Path) -> Workspace:
        """The four default folders under `base` (the demo's workspace), whatever the environment says."""
        base = Path(base).expanduser().resolve()
        return cls(base / "raw_data", base / "plans", base / "preprocessed", base / "results")

    @classmethod
    def from_environment(cls, base: Path | None = None, **overrides: Path | None) -> Workspace:
        """Folders from explicit overrides, else environment variables, else `base`/default names."""
        base = Path.cwd() if base is None else Path(base)
        folders = {}
        for key, default in (("raw", "raw_data"), ("plans", "plans"),
                             ("preprocessed", "preprocessed"), ("results", "results")):
            chosen = overrides.get(key) or os.environ.get(f"AUTOPIPE_{key.upper()}") or base / default
            folders[key] = Path(chosen).expanduser().resolve()
        return cls(**folders)

    def plans_dir(self, dataset_name: str) -> Path:
        return self.plans / dataset_name


def list_cohorts(raw_dir: Path) -> list[Path]:
    """Cohort folders under raw_dir: sub-folders that hold a dataset.json."""
    if not raw_dir.is_dir():
        return []
    return sorted(p for p in raw_dir.iterdir() if p.is_dir() and (p / "dataset.json").is_file())


def resolve_dataset(arg: str | None, raw_dir: Path) -> Path:
    """Find the cohort folder a DATASET argument names.

    Accepted: a folder name under raw_dir (`Dataset001_SynthPVL`), its number (`1` or `001`), its
    name (`SynthPVL`), or a path to a cohort folder. Optional when raw_dir holds exactly one cohort.
    """
    cohorts = list_cohorts(raw_dir)
    choices = ", ".join(p.name for p in cohorts) or "none"
    if arg is None:
        if len(cohorts) == 1:
            return cohorts[0]
        if not cohorts:
            raise AutopipeError(
                f"no cohort found in {raw_dir}",
                fix="put a cohort folder (DatasetNNN_Name with a dataset.json) there, run "
                "`autopipe synth` to make a synthetic one, or name a cohort path",
            )
        raise AutopipeError(
            f"{raw_dir} holds {len(cohorts)} cohorts ({choices})",
            fix="name one: `autopipe <command> DATASET` with its folder name, number or name",
        )

    as_path = Path(arg).expanduser()
    if as_path.is_dir() and (as_path / "dataset.json").is_file():
        return as_path.resolve()

    for cohort in cohorts:
        match = DATASET_FOLDER.match(cohort.name)
        if cohort.name == arg:
            return cohort
        if match and (arg.isdigit() and int(arg) == int(match.group(1)) or arg == match.group(2)):
            return cohort

    named = raw_dir / arg
    if not as_path.is_dir() and named.is_dir():
        as_path = named
    if as_path.is_dir():
        raise AutopipeError(
            f"{as_path} is a folder but has no dataset.json (dataset.json is missing)",
            fix="point at the cohort folder itself (the one holding dataset.json, imagesTr/, labelsTr/)",
        )
    raise AutopipeError(
        f"no cohort '{arg}' in {raw_dir} (cohorts there: {choices})",
        fix="give a folder name, its number, its name or a path; see raw_data/README.md",
    )
