"""Version 2 of the carrier's delay statistics: built beside v1, both exact incrementally; and a dbt build
that would drop a group version a model in use needs is refused before it builds."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import duckdb
import pytest
from fti_testing import copy_home, land, query, table_differences, ticking_clock

from models_ml.core.settings import load_settings
from models_ml.features.dbt_runner import DbtBuildError, build

pytestmark = pytest.mark.slow

START, END = dt.date(2013, 1, 1), dt.date(2013, 1, 4)
CARRIER = ["features.fg_carrier__delay_stats_v1", "features.fg_carrier__delay_stats_v2"]
SELECT = ["--select", "+fg_carrier__delay_stats"]  # both versions and what they are built from


def test_both_carrier_versions_built_a_day_at_a_time_equal_one_full_refresh(tmp_path):
    daily = load_settings(tmp_path / "daily")
    clock, day = ticking_clock(), START
    while day <= END:
        land(daily, day, clock, start=START)
        build(daily, ["run", *SELECT])
        day += dt.timedelta(days=1)
    bulk = load_settings(tmp_path / "bulk")
    land(bulk, END, ticking_clock(), start=START)
    build(bulk, ["run", *SELECT, "--full-refresh"])

    for relation in CARRIER:
        count_daily, count_bulk, only_daily, only_bulk = table_differences(daily.warehouse_path,
                                                                           bulk.warehouse_path, relation)
        print(f"\n{relation}: {count_bulk} rows in one full refresh, {count_daily} built a day at a time, "
              f"{only_daily} / {only_bulk} rows only in one of them")
        assert count_bulk > 0 and (count_daily, only_daily, only_bulk) == (count_bulk, 0, 0), relation
    # The same rows (one per carrier per departure moment) and the same 7- and 30-day values in both.
    assert query(bulk, """select count(*) from features.fg_carrier__delay_stats_v1 a
                          full join features.fg_carrier__delay_stats_v2 b using (carrier_code, event_at)
                          where a.flight_count_7d is distinct from b.flight_count_7d
                             or a.delayed_share_30d is distinct from b.delayed_share_30d""") == [(0,)]


def _without_carrier_v2(project) -> None:
    """Remove version 2 of the carrier group (model file, YAML version, its unit test, view v2) from a copy."""
    (project / "models/features/flights/fg_carrier__delay_stats_v2.sql").unlink()
    features = project / "models/features/flights/_flights__features.yml"
    text = features.read_text()
    start = text.index("      # v2: the same rows")
    text = text[:start] + text[text.index("    config:\n      unique_key: [carrier_code", start):]
    start = text.index("  - name: carrier_delay_stats_v2_day_window_is_half_open")
    text = text[:start] + text[text.index("  - name: weather_trailing_three_hours", start):]
    features.write_text(text)
    exposures = project / "models/_exposures.yml"
    text = exposures.read_text()
    start = text.index("\n  # Version 2 of the flight_delay view")
    exposures.write_text(text[:start] + text[text.index("\n  - name: card_fraud", start):])


def test_a_build_that_drops_a_group_version_in_use_is_refused_before_it_builds(built_home, tmp_path):
    home = copy_home(built_home, tmp_path / "home")
    with duckdb.connect(str(home.warehouse_path)) as con:  # what the registry writes at an alias change
        con.execute("""create schema registry;
            create table registry.group_versions_in_use (model_name varchar, version integer, role varchar,
                feature_group varchar, group_version integer, updated_at timestamptz);
            insert into registry.group_versions_in_use values
                ('flight_delay', 1, 'champion', 'fg_carrier__delay_stats', 1, now()),
                ('flight_delay', 2, 'challenger', 'fg_carrier__delay_stats', 2, now()),
                ('flight_delay', 3, 'rollback', 'fg_airport__operations', null, now())""")
    # every version in use is declared (the external group as a dbt source): builds
    build(home, ["build", "--select", "fg_carrier__delay_stats"])

    project = tmp_path / "dbt_project"
    shutil.copytree(home.dbt_project_dir, project, ignore=shutil.ignore_patterns("target", "logs"))
    _without_carrier_v2(project)
    changed = dataclasses.replace(home, dbt_project_dir=project)
    # dbt's saved parse is of the project in its old place; the copy elsewhere is parsed afresh
    (home.dbt_target_dir / "partial_parse.msgpack").unlink(missing_ok=True)
    before = query(home, "select count(*), max(loaded_at) from features.fg_carrier__delay_stats_v1")
    with pytest.raises(DbtBuildError) as refused:
        build(changed, ["build", "--select", "fg_carrier__delay_stats"])
    message = str(refused.value)
    print(f"\nrefused: {message}")
    assert ("feature group fg_carrier__delay_stats v2 is needed by model flight_delay v2 (challenger), but the "
            "dbt project no longer declares it") in message
    assert query(home, "select count(*), max(loaded_at) from features.fg_carrier__delay_stats_v1") == before
