"""Plain-text output shared by the `fti` commands: aligned tables, UTC times, numbers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Left-aligned columns under a header and a rule, two spaces apart."""
    cells = [[str(x) for x in row] for row in rows]
    widths = [max(len(x) for x in column) for column in zip(header, *cells)]
    line = lambda row: "  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
