"""New York local times become the right UTC instants across the 2013 daylight-saving changes."""

import datetime as dt

import duckdb
import pytest
from fti_testing import land, query, ticking_clock

from models_ml.core.settings import load_settings
from models_ml.features.dbt_runner import build

UTC = dt.timezone.utc


@pytest.mark.parametrize(
    ("local", "expected_utc"),
    [
        ("2013-03-09 06:00:00", "2013-03-09 11:00:00"),  # EST, UTC-5, the day before the change
        ("2013-03-10 01:59:00", "2013-03-10 06:59:00"),  # last minute of EST
        ("2013-03-10 03:00:00", "2013-03-10 07:00:00"),  # first minute of EDT, UTC-4
        ("2013-03-10 02:30:00", "2013-03-10 07:30:00"),  # in the spring gap: shifted forward by the gap
        ("2013-11-03 00:59:00", "2013-11-03 04:59:00"),  # EDT
        ("2013-11-03 01:30:00", "2013-11-03 06:30:00"),  # the repeated hour: the later (EST) instant
        ("2013-11-03 02:00:00", "2013-11-03 07:00:00"),  # EST
    ],
)
def test_local_to_utc_macro_semantics(local, expected_utc):
    """The SQL the `local_to_utc` macro renders to, on the instants around both changes."""
    with duckdb.connect() as con:
        (value,) = con.execute(f"select timezone('America/New_York', timestamp '{local}')").fetchone()
    assert value.astimezone(UTC) == dt.datetime.fromisoformat(expected_utc).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def dst_home(tmp_path_factory):
    """Real flights and weather on both change days (and the day after each)."""
    settings = load_settings(tmp_path_factory.mktemp("dst") / "home")
    clock = ticking_clock()
    land(settings, dt.date(2013, 3, 11), clock, start=dt.date(2013, 3, 9))
    land(settings, dt.date(2013, 11, 4), clock, start=dt.date(2013, 11, 2))
    build(settings, ["build"])
    return settings


@pytest.mark.slow
def test_every_real_flight_agrees_with_the_sources_utc_hour(dst_home):
    disagree = query(dst_home, "select count(*) from quarantine.quarantined_rows__nycflights "
                               "where rule_broken = 'schedule_disagrees_with_time_hour'")[0][0]
    flights = query(dst_home, "select count(*) from staging.stg_nycflights__flights")[0][0]
    assert flights > 3000 and disagree == 0


@pytest.mark.slow
def test_offset_changes_on_the_change_days(dst_home):
    rows = query(
        dst_home,
        """select strftime(scheduled_departure_at at time zone 'America/New_York', '%Y-%m-%d'),
                  min(extract(epoch from (scheduled_departure_at at time zone 'America/New_York'))
                      - extract(epoch from (scheduled_departure_at at time zone 'UTC'))) / 3600,
                  max(extract(epoch from (scheduled_departure_at at time zone 'America/New_York'))
                      - extract(epoch from (scheduled_departure_at at time zone 'UTC'))) / 3600
           from staging.stg_nycflights__flights group by 1 order by 1""",
    )
    offsets = {day: (lo, hi) for day, lo, hi in rows}
    assert offsets["2013-03-09"] == (-5, -5)
    assert offsets["2013-03-11"] == (-4, -4)
    assert offsets["2013-11-02"] == (-4, -4)
    assert offsets["2013-11-04"] == (-5, -5)


@pytest.mark.slow
def test_weather_keeps_both_repeated_local_hours_as_distinct_instants(dst_home):
    """The source reports local 01:00 twice on 2013-11-03 (EDT, then EST): two instants, none dropped."""
    rows = query(
        dst_home,
        """select observed_at from staging.stg_nycflights__weather
           where airport_code = 'EWR' and observed_at between '2013-11-03 05:00:00+00' and '2013-11-03 07:00:00+00'
           order by 1""",
    )
    assert [r[0].astimezone(UTC).hour for r in rows] == [5, 6, 7]
    quarantined = query(dst_home, "select count(*) from quarantine.quarantined_rows__nycflights where source_table like '%weather'")
    assert quarantined[0][0] == 0
