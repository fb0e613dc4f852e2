"""Pictures the pipeline wrote, embedded as base64 data URIs so the report needs no other file to be viewed."""

from __future__ import annotations

import base64
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_uri(path: Path) -> str | None:
    """`data:image/png;base64,...` of a PNG file; None when it is missing, unreadable or not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
