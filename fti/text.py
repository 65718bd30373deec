"""The command line's text, both ways: what the `fti` commands print (aligned tables, UTC times, numbers,
durations, aliases) and how they read an argument's value, failing with a :class:`UsageError` that names
the argument and the fix.

Only the standard library is imported here: the parser uses these checks, and `fti --help` must stay fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any


class UsageError(ValueError):
    """An argument the command cannot use; the message starts with the argument and ends with the fix."""


# --------------------------------------------------------------------------------------------------
# What the commands print


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


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration(value: dt.timedelta | None, none: str = "-") -> str:
    """A TTL as the YAML declares it ("3 hours", "2 days", "1 day 12 hours"), not timedelta's "2 days, 0:00:00"."""
    if value is None:
        return none
    seconds, parts = int(value.total_seconds()), []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    return " ".join(parts) or "0 seconds"


def versions(numbers: Iterable[int]) -> str:
    """``[1, 2]`` -> "v1, v2" (or "none")."""
    return ", ".join(f"v{n}" for n in numbers) or "none"


def aliases(mapping: Mapping[str, int]) -> str:
    """``{"champion": 1}`` -> "champion → v1" (or "none")."""
    return ", ".join(f"{alias} → v{version}" for alias, version in sorted(mapping.items())) or "none"


SPLITS = ("train", "validation", "test")


def counts(mapping: Mapping[str, Any] | None, order: Sequence[str] = ()) -> str:
    """``{"train": 4175, "test": 1393}`` -> "train 4,175, test 1,393", not a dict's repr: the keys in
    ``order`` first, the others as given; whole numbers with thousands separators."""
    items = sorted((mapping or {}).items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in items) or "-"


def group_versions(mapping: Mapping[str, int | None]) -> str:
    """``{"fg_a": 1, "fg_b": None}`` -> "fg_a v1, fg_b" (or "none")."""
    return ", ".join(g if v is None else f"{g} v{v}" for g, v in mapping.items()) or "none"


def move(previous: int | None, to: int | None) -> str:
    """An alias move: "v1 → v2", "- → v1" (set), "v2 → -" (removed)."""
    return f"{'-' if previous is None else f'v{previous}'} → {'-' if to is None else f'v{to}'}"


def listed(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


# --------------------------------------------------------------------------------------------------
# How the commands read their arguments (argparse types raise ArgumentTypeError, which the parser turns
# into its one-line usage error; the others raise UsageError)


def iso_date(text: str) -> str:
    """A calendar date ``YYYY-MM-DD``, returned as given (the flows take ISO strings)."""
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a date (YYYY-MM-DD)") from None


def time_zone(text: str) -> str:
    """An IANA time zone name."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise argparse.ArgumentTypeError(f"{text} is not an IANA time zone (like UTC or America/New_York)") from None
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def version_number(text: str) -> int:
    """A model version: ``3`` or ``v3``."""
    digits = text[1:] if text[:1] in "vV" else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text} is not a version number (like 3 or v3)")
    return int(digits)


def fractions(text: str) -> tuple[float, ...]:
    """``0.7,0.15,0.15``: the train, validation and test shares of the rows."""
    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or min(shares) <= 0 or abs(sum(shares) - 1) > 1e-9:
        raise argparse.ArgumentTypeError(f"{text} is not three positive shares summing to 1 (like 0.7,0.15,0.15)")
    return shares


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """"; did you mean X?" for a near miss, else nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def pick(flag: str, name: str | None, known: Sequence[str], what: str, where: str = "the project",
         none_yet: str = "") -> str:
    """``name`` when it is one of ``known``; without a name, the only one there is. Otherwise a UsageError
    that names ``flag`` and lists ``known`` (or says ``none_yet``, the fix, when there are none)."""
    if not known:
        fix = f"; {none_yet}" if none_yet else ""
        if name is None:
            raise UsageError(f"{flag}: {where} has no {what} yet{fix}")
        raise UsageError(f"{flag}: no {what} {name!r}: {where} has none yet{fix}")
    if name is None:
        if len(known) == 1:
            return known[0]
        raise UsageError(f"{flag}: which {what}? {where} has {len(known)} ({listed(known)}): name one with {flag}")
    if name not in known:
        raise UsageError(f"{flag}: no {what} {name!r} (known: {listed(known)}){did_you_mean(name, known)}")
    return name


def settings_pairs(pairs: Sequence[str] | None, flag: str, fields: Collection[str], what: str,
                   check: Callable[[dict[str, str]], Any] | None = None) -> dict[str, str]:
    """``KEY=VALUE`` arguments of ``flag`` as a mapping; each key must be one of ``fields`` (a suggestion for
    a near miss), and ``check`` (which raises ValueError naming the bad value) must accept the values."""
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag}: {pair!r} is not KEY=VALUE (like {flag} {sorted(fields)[0]}=...)")
        if key not in fields:
            raise UsageError(f"{flag}: no {what} {key!r}{did_you_mean(key, fields)} "
                             f"(known: {listed(sorted(fields))})")
        found[key] = value.strip()
    if check is not None:
        try:
            check(found)
        except ValueError as error:
            raise UsageError(f"{flag}: {error}") from None
    return found
