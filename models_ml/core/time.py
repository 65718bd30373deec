"""Time types every pipeline shares: UTC instants and half-open windows; a naive timestamp is refused."""

from __future__ import annotations

import datetime as dt
import zoneinfo
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


def day_window(day: str | dt.date, days: int = 1, zone: str = "UTC") -> TimeRange:
    """``[day, day + days)`` as calendar days of the IANA time ``zone`` (default UTC), as a UTC range: the
    entities whose event time falls on those days there (a New York day is 23, 24 or 25 hours long)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    start = day if isinstance(day, dt.date) else dt.date.fromisoformat(day)
    tz = time_zone(zone)
    midnight = lambda d: dt.datetime.combine(d, dt.time(0), tzinfo=tz)  # noqa: E731
    return TimeRange(as_utc(midnight(start)), as_utc(midnight(start + dt.timedelta(days=days))))


def time_zone(zone: str) -> dt.tzinfo:
    """The IANA time zone ``zone`` (ValueError naming it when there is none)."""
    if zone == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {zone!r}: use an IANA name like UTC or America/New_York") from error
