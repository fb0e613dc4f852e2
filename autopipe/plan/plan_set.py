"""plans/DATASET/ is written as one set: the complete new one, or the previous one, never a mix.

The new files are written into a hidden staging folder beside it; then the old folder is moved aside,
the staging folder renamed into place, and the old one removed. Each step is a rename, so a command
killed at any point leaves either the old set in place, or the new one, or (killed between the two
renames) the old one aside, which `recover` puts back before anything reads or writes plans.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autopipe.files import remove_stale_temporaries

KEPT = ("plans.previous.json",)  # files of the old set that the new one carries over


def _staging(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.staging"


def _aside(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.replaced"


def recover(folder: Path) -> None:
    """Undo what a killed `write_set` left: put the old set back if it was moved aside, drop a staging folder."""
    aside, staging = _aside(folder), _staging(folder)
    if aside.is_dir() and not folder.exists():
        aside.rename(folder)
    for leftover in (aside, staging):
        if leftover.exists():
            shutil.rmtree(leftover)
    remove_stale_temporaries(folder)


def write_set(folder: Path, files: dict[str, str]) -> dict[str, Path]:
    """Replace `folder` by a folder holding exactly `files` (name -> text) and the KEPT files of the old one."""
    recover(folder)
    staging = _staging(folder)
    staging.mkdir(parents=True)
    for name in KEPT:
        if (folder / name).is_file():
            shutil.copy2(folder / name, staging / name)
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    if folder.exists():
        folder.rename(_aside(folder))
    staging.rename(folder)
    shutil.rmtree(_aside(folder), ignore_errors=True)
    return {name: folder / name for name in files}
