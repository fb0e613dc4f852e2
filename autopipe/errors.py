"""The one exception type users see: a problem they can fix, said in context."""

from __future__ import annotations


class AutopipeError(Exception):
    """A problem with the user's input or environment, printed by the CLI without a traceback.

    Say where (case, file, plan key), what is wrong, and what to do about it.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.fix:
            text += f"\n  what to do: {self.fix}"
        return text


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), short enough for a one-line report."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
