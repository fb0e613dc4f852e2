"""Which DICOM series is which channel: rules the user can read (`autopipe import SRC X --show-rules`) and
replace (`--rules FILE`), as JSON.

    {
      "fields": ["SeriesDescription", "ProtocolName", "SequenceName"],
      "exclude": ["localizer", "scout", ...],          regexes: a series any of them finds is never used
      "exclude_image_type": ["LOCALIZER", ...],        ImageType values that exclude a series
      "channels": {
        "FLAIR": {"match": ["flair", ...], "exclude": ["t1[ _-]?flair"]},
        "T1w":   {"match": ["t1", "mprage", ...], "exclude": ["post", "gad", ...]},
        ...
      }
    }

Every regex is searched, ignoring case, in each of the `fields` of the series' header. A series is a
channel's candidate when one of the channel's "match" regexes finds something in one of the fields and
none of the "exclude" regexes (the channel's or the global ones) does. A channel asked for with
`--channels` takes the rule of the same name (ignoring case; "T1" also finds "T1w"). A series that is a
candidate of two asked channels is ambiguous and not used: make the rules tell them apart.

When several series of a study are candidates of one channel, the one with the most slices is chosen, then
the one with the thinnest slices, then the one with the highest SeriesNumber (a repeat is usually taken
because the first try moved); the others are listed as skipped, with the chosen one named.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from autopipe.errors import AutopipeError

DEFAULT_RULES: dict = {
    "fields": ["SeriesDescription", "ProtocolName", "SequenceName"],
    "exclude": ["localizer", "localiser", "scout", "survey", r"3[ _-]?plane", r"\bloc\b", "calibration",
                r"\bcal\b", r"\bref(erence)?[ _-]?scan\b", r"\bmpr\b", r"\bmip\b", "phoenix", "report"],
    "exclude_image_type": ["LOCALIZER", "MPR", "PROJECTION IMAGE", "MIP", "SCREEN SAVE"],
    "channels": {
        "FLAIR": {"match": ["flair", r"dark[ _-]?fluid", r"\btirm"], "exclude": [r"t1[ _-]?flair"]},
        "T1w": {"match": ["t1", "mprage", r"mp[ _-]?rage", "spgr", "bravo", r"tfl3d", r"\bt1[ _-]?tfe"],
                "exclude": ["post", "gad", r"\bgd\b", r"\+ ?c\b", "contrast", r"\bce\b", "t1rho", "map"]},
        "T1ce": {"match": [r"t1.*(post|gad|\bgd\b|\+ ?c\b|contrast|\bce\b)", r"(post|gad|contrast).*t1"],
                 "exclude": ["map"]},
        "T2w": {"match": ["t2", r"\btse\b", r"\bfse\b"],
                "exclude": ["flair", r"t2\*", "star", "swi", "map", "dwi", "diff", r"t2[ _-]?flair"]},
        "PD": {"match": [r"\bpd\b", "proton", r"\bpdw"], "exclude": ["t2"]},
        "DWI": {"match": ["dwi", "diff", "trace"], "exclude": ["adc", "fa map", r"\bfa\b"]},
    },
}


@dataclass(frozen=True)
class ChannelRule:
    """One channel's compiled rule."""

    name: str  # the rule's name in the rules ("T1w")
    match: tuple[re.Pattern, ...]
    exclude: tuple[re.Pattern, ...]


@dataclass(frozen=True)
class Rules:
    """Rules compiled for the channels asked, in channel order."""

    fields: tuple[str, ...]
    exclude: tuple[re.Pattern, ...]
    exclude_image_type: tuple[str, ...]
    channels: tuple[ChannelRule, ...]
    origin: str  # "the default rules" or the file they came from


@dataclass(frozen=True)
class Match:
    """What the rules say about one series: the index of the channel it is (None: none), and why."""

    channel: int | None
    why: str


def rules_json(path: Path | None) -> dict:
    """The rules as JSON: the default ones, or those of `path` (checked)."""
    if path is None:
        return copy.deepcopy(DEFAULT_RULES)
    where = str(path)
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AutopipeError(f"cannot read the rules file ({exc.strerror or exc})", where=where,
                            fix="give an existing JSON file (`--show-rules` prints the default rules)") from None
    except ValueError as exc:
        raise AutopipeError(f"the rules file is not valid JSON ({exc})", where=where, fix="repair its syntax") from None
    _check_shape(value, where)
    return value


def compile_rules(value: dict, channels: tuple[str, ...], origin: str) -> Rules:
    """The rules of the channels asked, compiled; AutopipeError naming a channel without a rule or a bad regex."""
    known = value["channels"]
    compiled = []
    for channel in channels:
        name = rule_name(channel, known)
        if name is None:
            raise AutopipeError(f"the rules have no rule for channel {channel!r} (they know "
                                f"{', '.join(known)})", where=origin,
                                fix="name a known channel in --channels, or add a rule for it: save "
                                    "`autopipe import SRC X --show-rules` to a file, edit it, pass --rules FILE")
        rule = known[name]
        compiled.append(ChannelRule(name, _compile(rule["match"], origin), _compile(rule.get("exclude", []), origin)))
    return Rules(tuple(value.get("fields", DEFAULT_RULES["fields"])), _compile(value.get("exclude", []), origin),
                 tuple(str(t).upper() for t in value.get("exclude_image_type", [])), tuple(compiled), origin)


def rule_name(channel: str, known: dict) -> str | None:
    """The rule a channel name asks for: the same name ignoring case, or with/without a trailing 'w' (T1, T1w)."""
    by_fold = {k.casefold(): k for k in known}
    key = channel.casefold()
    for candidate in (key, key + "w", key[:-1] if key.endswith("w") else None):
        if candidate and candidate in by_fold:
            return by_fold[candidate]
    return None


def match_series(texts: dict[str, str], image_type: tuple[str, ...], rules: Rules) -> Match:
    """Which channel a series is, by its header texts and ImageType (pure)."""
    fields = {f: texts.get(f, "") for f in rules.fields}
    shown = " / ".join(dict.fromkeys(v for v in fields.values() if v)) or "(no description)"
    excluded_type = [t for t in image_type if t in rules.exclude_image_type]
    if excluded_type:
        return Match(None, f"excluded: ImageType {excluded_type[0]} (rule exclude_image_type)")
    hit = _search(rules.exclude, fields)
    if hit:
        return Match(None, f"excluded: {hit} (rule exclude)")
    candidates = []
    for index, rule in enumerate(rules.channels):
        found = _search(rule.match, fields)
        if found and not _search(rule.exclude, fields):
            candidates.append((index, rule.name, found))
    if not candidates:
        asked = ", ".join(rule.name for rule in rules.channels)
        return Match(None, f"matches the rule of no channel asked ({asked}): {shown}")
    if len(candidates) > 1:
        names = " and ".join(name for _, name, _ in candidates)
        return Match(None, f"ambiguous: matches both {names} ({shown}); make the rules tell them apart")
    index, name, found = candidates[0]
    return Match(index, f"{name}: {found}")


def choice_key(slices: int, thickness: float, series_number: int | None) -> tuple:
    """Sort key of a channel's candidate series, the best first: most slices, thinnest slices, latest series."""
    return (-slices, round(thickness, 3), -(series_number or 0))


def _search(patterns: tuple[re.Pattern, ...], fields: dict[str, str]) -> str | None:
    for pattern in patterns:
        for name, text in fields.items():
            if text and pattern.search(text):
                return f"{name} {text!r} ~ /{pattern.pattern}/"
    return None


def _compile(patterns: list, where: str) -> tuple[re.Pattern, ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(str(pattern), re.IGNORECASE))
        except re.error as exc:
            raise AutopipeError(f"the regex {pattern!r} is not valid ({exc})", where=where,
                                fix="repair it (Python regex syntax; backslashes doubled in JSON)") from None
    return tuple(compiled)


def _check_shape(value: object, where: str) -> None:
    fix = "see `autopipe import SRC X --show-rules` for the format"
    if not isinstance(value, dict) or not isinstance(value.get("channels"), dict) or not value["channels"]:
        raise AutopipeError("the rules must be a JSON object with a non-empty \"channels\" object", where=where,
                            fix=fix)
    for key in ("fields", "exclude", "exclude_image_type"):
        if key in value and not (isinstance(value[key], list) and all(isinstance(v, str) for v in value[key])):
            raise AutopipeError(f"rules key {key!r} must be a list of strings", where=where, fix=fix)
    for name, rule in value["channels"].items():
        if not (isinstance(rule, dict) and isinstance(rule.get("match"), list) and rule["match"]
                and isinstance(rule.get("exclude", []), list)):
            raise AutopipeError(f"the rule of channel {name!r} must be {{\"match\": [regex, ...], \"exclude\": "
                                "[regex, ...]}} with at least one match regex", where=where, fix=fix)
