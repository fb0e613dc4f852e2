"""The report's building blocks: sections made of paragraphs, tables, figures and "missing: run this" notes.

Sections are plain data; the jinja2 template (templates/report.html.j2) turns them into HTML and escapes every
text, so case names or reasons with <, & or quotes are shown as written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autopipe.report.images import png_data_uri


@dataclass
class Section:
    """One part of the report: an anchor id, a title, and blocks in reading order."""

    id: str
    title: str
    blocks: list[dict] = field(default_factory=list)

    def text(self, text: str, style: str = "") -> None:
        """A paragraph; style "note" for a small remark, "lead" for the section's answer in one sentence."""
        self.blocks.append({"kind": "text", "text": text, "style": style})

    def missing(self, what: str, command: str) -> None:
        """Something that does not exist yet, and the command that makes it."""
        self.blocks.append({"kind": "missing", "what": what, "command": command})

    def facts(self, pairs: Iterable[tuple[str, object]], caption: str = "") -> None:
        """A two-column list of name and value."""
        self.blocks.append({"kind": "facts", "caption": caption,
                            "pairs": [(str(k), _cell(v)) for k, v in pairs]})

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[object]], caption: str = "",
              row_styles: Sequence[str] | None = None, notes: Sequence[str] = (),
              widths: Sequence[str] = ()) -> None:
        """A table; `row_styles` per row: "" or "bad", "warn", "good" (a coloured marker); `widths`: CSS widths of
        the first columns, for tables of the same kind to line up (the last column takes the rest)."""
        rows = [[_cell(v) for v in row] for row in rows]
        styles = list(row_styles or [""] * len(rows))
        self.blocks.append({"kind": "table", "caption": caption, "columns": list(columns),
                            "rows": list(zip(styles, rows, strict=True)), "notes": list(notes),
                            "widths": list(widths)})

    def figure(self, path: Path, caption: str, size: str = "full") -> bool:
        """A PNG embedded as a data URI, "full" width or "half" (two side by side); False (and nothing added) when
        the file is not a readable PNG."""
        uri = png_data_uri(path)
        if uri is None:
            return False
        self.blocks.append({"kind": "figure", "src": uri, "caption": caption, "file": str(path), "size": size})
        return True

    def items(self, lines: Iterable[tuple[str, str]], caption: str = "") -> None:
        """A list of (style, text) lines, e.g. check warnings."""
        self.blocks.append({"kind": "items", "caption": caption, "lines": list(lines)})

    def is_empty(self) -> bool:
        return not self.blocks


def _cell(value: object) -> str:
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return "–" if value is None else str(value)


def fmt(value: object, digits: int = 3) -> str:
    """A number for a table: `digits` decimals (fewer for large values), n/a for None or NaN."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.2g}"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"


def mean_std(stats: object, digits: int = 3) -> str:
    """"mean ± std" of an aggregate entry {"mean", "std", ...}; n/a when absent."""
    if not isinstance(stats, dict) or stats.get("mean") is None:
        return "n/a"
    std = None if stats.get("n") == 1 else stats.get("std")  # one value has no spread
    return fmt(stats["mean"], digits) + ("" if std is None else f" ± {fmt(std, digits)}")
