"""What every section needs: the cohort, the workspace, and a tolerant reader for the JSON files autopipe wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autopipe.paths import Workspace


@dataclass(frozen=True)
class ReportContext:
    """The cohort folder, its name (DatasetNNN_Name) and the four working folders."""

    root: Path
    workspace: Workspace

    @property
    def dataset(self) -> str:
        return self.root.name

    @property
    def plans_dir(self) -> Path:
        return self.workspace.plans_dir(self.dataset)

    @property
    def results_dir(self) -> Path:
        return self.workspace.results / self.dataset

    @property
    def preprocessed_dir(self) -> Path:
        return self.workspace.preprocessed / self.dataset

    def command(self, text: str) -> str:
        """`autopipe COMMAND DATASET ...` as a user would type it for this cohort."""
        head, _, rest = text.partition(" ")
        words = text.split(" ")
        if head == "train":  # autopipe train FOLD DATASET ...
            return " ".join(["autopipe", "train", words[1], self.dataset, *words[2:]])
        return " ".join(["autopipe", head, self.dataset, *([rest] if rest else [])])


def read_json_or_none(path: Path) -> object | None:
    """A JSON file's content; None when it is missing or damaged (the section then says what to run)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
