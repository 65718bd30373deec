"""A daily run tests the feature rows it wrote; uniqueness of one row per entity is still tested on the
whole table, and a run without the window (full refresh, a run after a failure) tests everything.

Shown by behaviour: rows that break a test are put where the window does or does not look, and the build
either catches them or, by design, does not.
"""

import datetime as dt

import pytest
from fti_testing import land, query, ticking_clock

from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.pipeline import TEST_WRITTEN_WINDOW_VAR
from models_ml.offline.store import opened

CARRIER = "features.fg_carrier__delay_stats_v1"
PLANES = "features.fg_plane__attributes_v1"


def duplicate_oldest_row(settings, relation: str, order_by: str) -> None:
    """A copy of the table's oldest row, as old as the original (outside any later run's window)."""
    with opened(settings) as store:
        store.execute(f"insert into {relation} select * from {relation} order by {order_by} limit 1")


def remove_duplicates(settings, relation: str, key: str) -> None:
    with opened(settings) as store:
        store.execute(f"create or replace table {relation} as select distinct on ({key}) * from {relation}")


@pytest.mark.slow
def test_a_daily_run_tests_what_it_wrote_and_entity_uniqueness_on_the_whole_table(scratch_home):
    selection = load_catalog(scratch_home).domain("flights").dbt_selection.split()
    daily = ["build", "--select", *selection]
    window = {TEST_WRITTEN_WINDOW_VAR: True}
    duplicate_oldest_row(scratch_home, CARRIER, "event_at, carrier_code")
    duplicate_oldest_row(scratch_home, PLANES, "event_at, tail_number")
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))

    # One row per plane is a whole-table rule: the windowed run still reads every row, and fails.
    with pytest.raises(DbtBuildError, match="unique_fg_plane__attributes") as failed:
        build(scratch_home, daily, window)
    assert "fg_carrier__delay_stats" not in "\n".join(
        line for line in str(failed.value).splitlines() if line.startswith("- test")
    )

    # The carrier grain includes the event time: rows outside the window did not change this run, so the
    # windowed run does not re-read them (the duplicate is older than anything it wrote) ...
    remove_duplicates(scratch_home, PLANES, "tail_number")
    build(scratch_home, daily, window)
    assert query(scratch_home, f"select count(*) from {CARRIER} where event_at >= '2013-01-11'")[0][0] > 0

    # ... while a run that tests whole tables (after a failure, or a full refresh) finds it.
    with pytest.raises(DbtBuildError, match="unique_combination_of_columns_fg_carrier__delay_stats"):
        build(scratch_home, daily)
