"""Day windows are calendar days of a time zone, as half-open UTC ranges; DST days are 23 or 25 hours."""

import datetime as dt

import pytest

from models_ml.core.time import day_window

UTC = dt.timezone.utc


def test_a_utc_day_is_its_midnights():
    window = day_window("2013-03-10")
    assert (window.start, window.end) == (dt.datetime(2013, 3, 10, tzinfo=UTC), dt.datetime(2013, 3, 11, tzinfo=UTC))


@pytest.mark.parametrize(("day", "midnight_utc_hour", "hours"),
                         [("2013-03-10", 5, 23), ("2013-11-03", 4, 25), ("2013-07-01", 4, 24)])
def test_a_new_york_day_is_its_local_midnights_across_daylight_saving(day, midnight_utc_hour, hours):
    window = day_window(day, 1, "America/New_York")
    assert window.start == dt.datetime.fromisoformat(day).replace(hour=midnight_utc_hour, tzinfo=UTC)
    assert window.end - window.start == dt.timedelta(hours=hours)
    assert window.start.utcoffset() == dt.timedelta(0)


def test_days_are_contiguous_and_an_unknown_zone_is_named():
    assert day_window("2013-03-09", 2, "America/New_York").end == day_window("2013-03-11", 1, "America/New_York").start
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus': use an IANA name"):
        day_window("2013-03-10", 1, "Mars/Olympus")
