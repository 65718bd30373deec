"""Time types every pipeline shares: UTC instants and half-open windows; a naive timestamp is refused."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

UTC = dt.timezone.utc


def as_utc(value: str | dt.date | dt.datetime) -> dt.datetime:
    """A UTC instant from an ISO string, a date (its UTC midnight) or an aware datetime.

    A naive datetime is rejected: guessing its time zone is how off-by-hours leakage creeps in.
    """
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value) if ("T" in value or " " in value) else dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware instant (UTC)")
        return value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"expected an ISO string, date or aware datetime, got {type(value).__name__}")


@dataclass(frozen=True)
class TimeRange:
    """A half-open window ``[start, end)`` on the spine time, in UTC."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        if not self.start < self.end:
            raise ValueError(f"empty time range: start {self.start} is not before end {self.end}")

    @classmethod
    def of(cls, start: str | dt.date | dt.datetime, end: str | dt.date | dt.datetime) -> TimeRange:
        return cls(as_utc(start), as_utc(end))


def day_window(day: str | dt.date, days: int = 1) -> TimeRange:
    """``[day, day + days)`` in UTC: the entities whose event time falls on those UTC days."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    start = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
    return TimeRange.of(start, start + dt.timedelta(days=days))
