"""BIDS file names into entities, and which of several files of one suffix to use.

BIDS (https://bids-specification.readthedocs.io, "Common principles: filenames") names a file
`sub-<label>[_ses-<label>][_<key>-<value>]..._<suffix><extension>`: hyphen-separated key-value pairs
joined by underscores, `sub` first, each key once; labels are alphanumeric ([0-9a-zA-Z]+), index
entities (run-, echo-, ...) non-negative integers; the suffix is alphanumeric and the extension
starts with a dot (.nii.gz). This is all autopipe needs to read of a name, so it is parsed here
rather than through pybids (see autopipe.cohort.import_bids for why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LABEL = re.compile(r"^[0-9a-zA-Z]+$")
INDEX = re.compile(r"^[0-9]+$")
# Entities whose value is an index (a non-negative integer), not a label.
INDEX_ENTITIES = frozenset({"run", "echo", "flip", "inv", "split", "chunk"})
_NAME = re.compile(r"^(?P<pairs>(?:[0-9a-zA-Z]+-[^_]*_)+)(?P<suffix>[0-9a-zA-Z]+)(?P<extension>(?:\.[0-9a-zA-Z]+)+)$")
# Entities that do not make a file another kind of acquisition: its subject, session, and run (a repeat of the
# same acquisition).
_PLACE_ENTITIES = frozenset({"sub", "ses", "run"})
SELECTION_RULE = ("fewest entities besides sub-, ses-, run- (acq-, rec-, ...), then the highest run-, then .nii.gz, "
                  "then name")


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: its entities in file order, suffix and extension."""

    name: str
    entities: dict[str, str]
    suffix: str
    extension: str

    @property
    def sub(self) -> str:
        return self.entities["sub"]

    @property
    def ses(self) -> str | None:
        return self.entities.get("ses")

    @property
    def run(self) -> int:
        """The run index; 0 when the name has none."""
        return int(self.entities.get("run", "0"))


def parse_bids_name(name: str) -> BidsName | None:
    """The entities, suffix and extension of a BIDS file name (no folders); None when it breaks BIDS naming."""
    match = _NAME.match(name)
    if match is None:
        return None
    entities: dict[str, str] = {}
    for pair in match["pairs"][:-1].split("_"):
        key, _, value = pair.partition("-")
        if key in entities or not LABEL.match(value) or (key in INDEX_ENTITIES and not INDEX.match(value)):
            return None
        entities[key] = value
    if next(iter(entities)) != "sub":
        return None
    return BidsName(name, entities, match["suffix"], match["extension"])


def naming_problem(name: str) -> str:
    """Why `name` is not a BIDS file name, in words (for the import report)."""
    match = _NAME.match(name)
    if match is None:
        return "not named like sub-<label>[_<key>-<value>]..._<suffix>.<extension> (BIDS)"
    keys = []
    for pair in match["pairs"][:-1].split("_"):
        key, _, value = pair.partition("-")
        if key in keys:
            return f"the entity {key}- appears twice"
        if not LABEL.match(value):
            return f"{key}-{value}: a BIDS label is letters and digits only"
        if key in INDEX_ENTITIES and not INDEX.match(value):
            return f"{key}-{value}: {key}- takes a number"
        keys.append(key)
    return "a BIDS file name starts with sub-<label>" if keys[0] != "sub" else "not a BIDS file name"


def selection_key(name: BidsName) -> tuple:
    """Sort key of the documented rule (SELECTION_RULE) for files of one suffix in one subject/session:
    the first after sorting is used."""
    others = sum(key not in _PLACE_ENTITIES for key in name.entities)
    return others, -name.run, name.extension != ".nii.gz", name.name


def choose(names: list[BidsName]) -> tuple[BidsName, list[BidsName]]:
    """The file SELECTION_RULE picks among files of one suffix, and the others in rule order."""
    ordered = sorted(names, key=selection_key)
    return ordered[0], ordered[1:]
