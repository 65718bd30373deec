"""A daily run tests the rows it wrote; uniqueness on a key without the event time reads the rows whose key a
written row has; a staging view's tests read the rows its base model appended; a run without the window
(full refresh, a run after a failure) tests everything.

Shown by behaviour: rows that break a test are put where the window does or does not look, and the build
either catches them or, by design, does not. Each windowed build runs two ways, with the same outcome: every
test a dbt node, and the row rules checked inside the models that write their rows (the DuckDB daily run:
macros/row_checks.sql), where a failing check also leaves the model's table as it was.
"""

import datetime as dt
import re

import pytest
from fti_testing import land, query, ticking_clock

from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.pipeline import TEST_WRITTEN_WINDOW_VAR, row_rules_checked_in_models
from models_ml.features.row_checks import CHECK_WRITTEN_ROWS_VAR
from models_ml.offline.store import opened

CARRIER = "features.fg_carrier__delay_stats_v1"
PLANES = "features.fg_plane__attributes_v1"
FLIGHTS_VIEW_BASE = "staging.base_nycflights__flights"
WINDOW = {TEST_WRITTEN_WINDOW_VAR: True}


def execute(settings, sql: str) -> None:
    with opened(settings) as store:
        store.execute(sql)


def duplicate_row(settings, relation: str, order_by: str) -> None:
    """A copy of the table's first row by `order_by`, as old as the original (no later run wrote it)."""
    execute(settings, f"insert into {relation} select * from {relation} order by {order_by} limit 1")


def remove_duplicates(settings, relation: str, key: str) -> None:
    execute(settings, f"create or replace table {relation} as select distinct on ({key}) * from {relation}")


def add_old_flight(settings, replaced: str, where: str = "true") -> None:
    """A copy, under a new flight id and with `replaced` (`<value> as <column>`), of the oldest base flight
    row that `where` keeps: as old as it, so no later run appended it."""
    execute(settings, f"""insert into {FLIGHTS_VIEW_BASE}
        select * replace (flight_id || '-old' as flight_id, {replaced})
        from {FLIGHTS_VIEW_BASE} where {where} order by loaded_at, flight_id limit 1""")


def land_plane_like_the_newest(settings, tail_number: str) -> None:
    """A raw plane row landed after everything else, a copy of the plane built most recently under a new
    tail number: the next run writes its attributes row, whose event time (the year built) is the latest."""
    execute(settings, f"""
        insert into raw.planes
        select * replace ('{tail_number}' as tailnum, _loaded_at + interval 1 hour as _loaded_at,
                          'test-{tail_number}' as _batch_id)
        from raw.planes order by try_cast(year as integer) desc nulls last, _loaded_at desc limit 1""")


def failing_tests(error: DbtBuildError) -> set[str]:
    """The tests a failed build names: failing test nodes, and the tests a model's check found failing."""
    text = str(error)
    return ({line.split()[2].rstrip(":") for line in text.splitlines() if line.startswith("- test")}
            | set(re.findall(r"(\w+) \(\d+ failing rows", text)))


def daily_build(settings) -> list[str]:
    return ["build", "--select", *load_catalog(settings).domain("flights").dbt_selection.split()]


@pytest.fixture(params=["test nodes", "checks in models"])
def windowed(request):
    """`build` with the written window, the row rules either as test nodes or checked in their models."""
    def run(settings, args: list[str]):
        if request.param == "test nodes":
            return build(settings, args, WINDOW)
        catalog = load_catalog(settings)
        terms = row_rules_checked_in_models(settings, catalog, catalog.domain("flights"))
        assert terms, "the flights row rules can be checked in their models"
        return build(settings, [*args, "--exclude", *terms], {**WINDOW, CHECK_WRITTEN_ROWS_VAR: True})
    run.in_models = request.param != "test nodes"
    return run


def rows(settings, relation: str) -> list[tuple]:
    return query(settings, f"select count(*), max(loaded_at) from {relation}")


@pytest.mark.slow
def test_a_daily_run_tests_the_window_it_wrote_and_the_rows_it_cannot_place(scratch_home, windowed):
    duplicate_row(scratch_home, CARRIER, "event_at, carrier_code")
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))

    # The carrier grain includes the event time: rows outside the window did not change this run, so the
    # windowed run does not re-read them (the duplicate is older than anything it wrote) ...
    windowed(scratch_home, daily_build(scratch_home))
    assert query(scratch_home, f"select count(*) from {CARRIER} where event_at >= '2013-01-11'")[0][0] > 0

    # ... while a run that tests whole tables (after a failure, or a full refresh) finds it.
    with pytest.raises(DbtBuildError, match="unique_combination_of_columns_fg_carrier__delay_stats"):
        build(scratch_home, daily_build(scratch_home))

    # A row with no event time cannot be placed inside or outside the window: a windowed run reads it.
    remove_duplicates(scratch_home, CARRIER, "carrier_code, event_at")
    execute(scratch_home, f"insert into {CARRIER} select * replace (null as event_at) from {CARRIER} "
                          "order by event_at, carrier_code limit 1")
    land(scratch_home, dt.date(2013, 1, 12), ticking_clock(dt.datetime(2026, 1, 6, tzinfo=dt.timezone.utc)),
         start=dt.date(2013, 1, 12))
    before = rows(scratch_home, CARRIER)
    with pytest.raises(DbtBuildError, match="not_null_fg_carrier__delay_stats_v1_event_at"):
        windowed(scratch_home, daily_build(scratch_home))
    # a test node runs after its model committed the day; a check in the model rolls the day back
    assert (rows(scratch_home, CARRIER) == before) == windowed.in_models


@pytest.mark.slow
def test_one_row_per_entity_is_tested_on_every_key_a_written_row_has(scratch_home, windowed):
    daily = daily_build(scratch_home)
    newest_year = query(scratch_home, f"select max(event_at) from {PLANES}")[0][0]
    # A second row for the oldest-built plane: no row the run writes has its key.
    duplicate_row(scratch_home, PLANES, "event_at, tail_number")
    land_plane_like_the_newest(scratch_home, "N0TEST")
    windowed(scratch_home, daily)
    assert query(scratch_home, f"select count(*) from {PLANES} where tail_number = 'N0TEST'") == [(1,)]
    with pytest.raises(DbtBuildError, match="unique_fg_plane__attributes"):  # a whole-table run finds it
        build(scratch_home, daily)

    # A second row for a plane inside the window of the plane the run writes (built the same year): the
    # windowed run reads every row with a key the window holds, and fails on it.
    remove_duplicates(scratch_home, PLANES, "tail_number")
    execute(scratch_home, f"""insert into {PLANES} select * from {PLANES}
                             where event_at = '{newest_year.isoformat()}' and tail_number <> 'N0TEST' limit 1""")
    land_plane_like_the_newest(scratch_home, "N1TEST")
    with pytest.raises(DbtBuildError, match="unique_fg_plane__attributes") as failed:
        windowed(scratch_home, daily)
    assert not any("fg_carrier__delay_stats" in name for name in failing_tests(failed.value))


@pytest.mark.slow
def test_a_staging_views_tests_read_the_rows_its_base_model_appended(scratch_home, windowed):
    daily = daily_build(scratch_home)
    origin_test = "accepted_values_stg_nycflights__flights_origin_airport_code"
    # A row from an unknown airport, as old as the oldest flight: the windowed run does not re-read it ...
    add_old_flight(scratch_home, "'XXX' as origin_airport_code", "rule_broken is null")
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))
    windowed(scratch_home, daily)
    assert query(scratch_home, f"select count(*) from {CARRIER} where event_at >= '2013-01-11'")[0][0] > 0
    with pytest.raises(DbtBuildError, match=origin_test):  # ... a whole-table run does
        build(scratch_home, daily)

    # A newly landed row from an unknown airport: the windowed run tests what the base model appended.
    execute(scratch_home, f"delete from {FLIGHTS_VIEW_BASE} where origin_airport_code = 'XXX'")
    land(scratch_home, dt.date(2013, 1, 12), ticking_clock(dt.datetime(2026, 1, 6, tzinfo=dt.timezone.utc)),
         start=dt.date(2013, 1, 12))
    execute(scratch_home, "update raw.flights set origin = 'XXX' where rowid = (select max(rowid) from raw.flights)")
    before = rows(scratch_home, FLIGHTS_VIEW_BASE)
    with pytest.raises(DbtBuildError, match=origin_test) as failed:
        windowed(scratch_home, daily)
    assert "XXX" in str(failed.value)
    assert (rows(scratch_home, FLIGHTS_VIEW_BASE) == before) == windowed.in_models


@pytest.mark.slow
def test_the_flights_label_and_spine_tests_read_the_rows_loaded_since_their_watermark(scratch_home, windowed):
    daily = daily_build(scratch_home)
    label, spine = "labels.label_flight__departure_delay", "spines.spine_flight__scheduled"
    # A second copy of each table's oldest row, loaded no later than the rest: the windowed run does not
    # re-read it (no row it appends shares its key) ...
    for relation in (label, spine):
        duplicate_row(scratch_home, relation, "loaded_at, flight_id")
    counts = [query(scratch_home, f"select count(*) from {relation}")[0][0] for relation in (label, spine)]
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))
    windowed(scratch_home, daily)
    assert all(query(scratch_home, f"select count(*) from {relation}")[0][0] > count
               for relation, count in zip((label, spine), counts))
    # ... a whole-table run finds both.
    with pytest.raises(DbtBuildError) as failed:
        build(scratch_home, daily)
    assert {"unique_label_flight__departure_delay_flight_id",
            "unique_spine_flight__scheduled_flight_id"} <= failing_tests(failed.value)


@pytest.mark.slow
def test_a_quarantines_tests_read_the_rows_its_base_models_appended(scratch_home, windowed):
    daily = daily_build(scratch_home)
    rule_test = "accepted_values_quarantined_rows__nycflights_rule_broken"
    # A broken row with a rule no base model gives, as old as the oldest row: the windowed run, which builds
    # some of the quarantine's base models and not others, does not re-read it ...
    add_old_flight(scratch_home, "'no_such_rule' as rule_broken")
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))
    windowed(scratch_home, ["build", "--select", *(f"source:nycflights.{table}+" for table in
                                                   ("flights", "schedule", "weather"))])
    with pytest.raises(DbtBuildError, match=rule_test):  # ... a whole-table run does
        build(scratch_home, daily)
