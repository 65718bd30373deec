"""An external feature group, read in place and never copied: the airport operations team's capacity plan.

On the ten-day flights slice, the plan is written by the stand-in script into its own DuckDB file under
the home (`upstream/airport_operations.duckdb`, as the dbt source declares). Shown: the catalog lists it as
external with where it lives and dbt's source freshness; a snapshot of flight_delay v3 joins it through the
point-in-time join and creates no table of its rows; the snapshot fingerprints what it read, so an
unchanged upstream gives the same snapshot and a changed one another; a missing file, a renamed column or a
naive timestamp upstream stops the snapshot with one line naming the source, the column and the fix, and
publishes nothing; a model trained on v3 is scored in batch, and the online store materializes the group
incrementally.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fti_testing import copy_home, fit_for_registry, query

from examples.flights.airport_operations import TABLE, capacity_plan, write_duckdb, write_parquet
from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import catalog_from_manifest, load_catalog
from models_ml.inference.batch.pipeline import predict_window
from models_ml.inference.online.materialize import refresh_online_store
from models_ml.offline.external import ExternalGroupError
from models_ml.offline.store import opened
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import TimeSplit

pytestmark = pytest.mark.slow

GROUP, SOURCE = "fg_airport__operations", "airport_operations.fg_airport__operations"
SNAPSHOT_RANGE = TimeRange.of("2013-01-02", "2013-01-09")
FIRST, LAST = dt.date(2012, 12, 20), dt.date(2013, 1, 20)


def upstream_path(settings) -> Path:
    return settings.home / "upstream" / "airport_operations.duckdb"


def write_plan(settings, seed: int = 13, rows=None) -> None:
    write_duckdb(rows if rows is not None else capacity_plan(FIRST, LAST, seed), upstream_path(settings))


def warehouse_tables(settings) -> set[tuple[str, str]]:
    """Every table and view in the warehouse file itself, read by a plain connection (nothing mounted)."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return set(con.execute("select table_schema, table_name from information_schema.tables "
                               "where table_catalog = current_database()").fetchall())


def snapshot(settings, view_version: int = 3) -> sn.SnapshotInfo:
    view = load_catalog(settings).view("flight_delay", view_version)
    with opened(settings) as store:
        return sn.build_snapshot(store, view, SNAPSHOT_RANGE)


def fti(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("fti")), *args], capture_output=True, text=True,
                          env={**os.environ, "FTI_HOME": str(settings.home)}, timeout=300)


@pytest.fixture(scope="module")
def home(built_home, tmp_path_factory):
    settings = copy_home(built_home, tmp_path_factory.mktemp("external") / "home")
    write_plan(settings)
    return settings


def test_the_catalog_lists_it_as_external_with_where_it_lives_and_its_freshness(home):
    group = load_catalog(home).group(GROUP, None)
    assert group.kind == "external source" and group.schema == "fti_external"
    assert group.external.path == str(upstream_path(home)) and group.external.loaded_at_field == "loaded_at"
    listing = fti(home, "features", "list")
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith(GROUP))
    assert "external source" in line and f"{3 * ((LAST - FIRST).days + 1)}" in line
    assert "error (loaded" in line  # dbt's rule: loaded years ago, past error_after (3 days)
    assert f"lives in duckdb {upstream_path(home)} main.{TABLE}" in listing.stdout
    shown = fti(home, "features", "show", GROUP)
    assert shown.returncode == 0, shown.stderr
    assert "read in place, never copied" in shown.stdout and "columns against the declaration: ok" in shown.stdout


def test_a_snapshot_joins_it_in_place_and_copies_nothing(home):
    before = warehouse_tables(home)
    info = snapshot(home)
    created = warehouse_tables(home) - before
    # the snapshot itself (and the snapshots' registry, on a home's first), no table of the group's rows
    assert created - {("snapshots", "snapshot_registry")} == {("snapshots", info.snapshot_id)}
    assert not any(name in (GROUP, TABLE) for _, name in warehouse_tables(home))
    (read,) = info.external_reads
    assert (read["group"], read["source"], read["location"]) == (GROUP, SOURCE, str(upstream_path(home)))
    assert read["rows_read"] > 0 and read["latest_loaded_at"] is not None

    # the joined values are the plan's row of the flight's origin and New York day (valid from midnight)
    rows = query(home, f"""
        select s.origin_airport_code, s.prediction_at, s.origin_ops_open_runways
        from snapshots."{info.snapshot_id}" s order by s.flight_id limit 200""")
    plan = capacity_plan(FIRST, LAST).to_pylist()
    by_key = {(r["airport_code"], r["operations_date"]): r["open_runways"] for r in plan}
    new_york = dt.timezone(dt.timedelta(hours=-5))  # January: EST, no daylight saving in the slice
    for origin, at, runways in rows:
        assert runways == by_key[(origin, at.astimezone(new_york).date())]


def test_the_fingerprint_moves_with_the_upstream_and_only_with_it(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    first = snapshot(settings)
    again = snapshot(settings)
    assert again.reused and (again.snapshot_id, again.content_hash) == (first.snapshot_id, first.content_hash)

    write_plan(settings, seed=99)  # the team publishes another plan
    changed = snapshot(settings)
    assert not changed.reused and changed.snapshot_id != first.snapshot_id
    assert changed.content_hash != first.content_hash
    assert changed.external_reads[0]["content_hash"] != first.external_reads[0]["content_hash"]

    # a view without external groups keeps its id whatever the upstream does
    plain = snapshot(settings, view_version=1)
    write_plan(settings, seed=13)
    assert snapshot(settings, view_version=1).snapshot_id == plain.snapshot_id


def test_parquet_files_read_in_place_give_the_same_snapshot_content(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    write_parquet(capacity_plan(FIRST, LAST), settings.home / "upstream" / "capacity")  # one file per month
    manifest = json.loads(settings.manifest_path.read_text())
    (node,) = [n for n in manifest["sources"].values() if n["name"] == GROUP]
    for meta in (node.get("config", {}).get("meta"), node.get("meta")):
        if meta and "fti" in meta:
            meta["fti"]["location"] = "upstream/capacity"
    view = catalog_from_manifest(manifest, home=settings.home).view("flight_delay", 3)
    assert view.features[-1].group.external.describe() == f"parquet {settings.home / 'upstream' / 'capacity'}"
    before = warehouse_tables(settings)
    with opened(settings) as store:
        from_parquet = sn.build_snapshot(store, view, SNAPSHOT_RANGE)
    assert warehouse_tables(settings) - before - {("snapshots", "snapshot_registry")} == {
        ("snapshots", from_parquet.snapshot_id)}
    from_duckdb = snapshot(settings)
    assert from_parquet.content_hash == from_duckdb.content_hash  # the same rows, read from either place
    assert from_parquet.snapshot_id != from_duckdb.snapshot_id  # read from elsewhere: another identity
    assert from_parquet.external_reads[0]["content_hash"] == from_duckdb.external_reads[0]["content_hash"]


@pytest.mark.parametrize("damage, expected", [
    ("missing", [SOURCE, "cannot read the upstream table", "no DuckDB file at", "meta.fti.location"]),
    ("renamed", [SOURCE, "declared column 'open_gates' is not in the upstream table", "gates_open",
                 "declare the new name"]),
    ("naive", [SOURCE, "column 'valid_from' is a naive timestamp upstream", "timestamp with time zone",
               "at time zone 'UTC'"]),
    ("retyped", [SOURCE, "column 'open_gates' is text", "declared 'integer'", "declare the upstream type"]),
])
def test_a_damaged_upstream_stops_the_snapshot_naming_source_column_and_fix(home, tmp_path, damage, expected):
    settings = copy_home(home, tmp_path / "home")
    path = upstream_path(settings)
    if damage == "missing":
        path.unlink()
    else:
        with duckdb.connect(str(path)) as con:
            if damage == "renamed":
                con.execute(f"alter table {TABLE} rename column open_gates to gates_open")
            elif damage == "retyped":
                con.execute(f"alter table {TABLE} alter open_gates type varchar")
            else:
                con.execute("set TimeZone = 'UTC'")
                con.execute(f"alter table {TABLE} alter valid_from type timestamp using valid_from::timestamp")
    before = warehouse_tables(settings)
    with opened(settings, read_only=True) as store:
        registered = store.scalar(f"select count(*) from {sn.REGISTRY}")
    with pytest.raises(ExternalGroupError) as stopped:
        snapshot(settings)
    message = str(stopped.value)
    print(f"\n{damage}: {message}")
    assert "\n" not in message and all(part in message for part in expected), message
    assert warehouse_tables(settings) == before  # nothing published, no scratch left
    with opened(settings, read_only=True) as store:
        assert store.scalar(f"select count(*) from {sn.REGISTRY}") == registered


def test_a_model_on_the_external_group_is_trained_scored_and_served_from_the_store(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    view = load_catalog(settings).view("flight_delay", 3)
    config = tr.TrainConfig(num_boost_round=30, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20,
                            min_data_per_group=10, learning_rate=0.2, categorical_features=())
    fitted = fit_for_registry(settings, view, SNAPSHOT_RANGE, TimeSplit(fractions=(0.6, 0.2, 0.2)), config)
    version = registry.register_model(settings, "flight_delay", *fitted)
    assert version.feature_group_versions[GROUP] is None and version.feature_view_version == 3
    assert "origin_ops_open_runways" in version.features

    before = warehouse_tables(settings)
    first = refresh_online_store(settings, "sqlite")  # the group is online: its latest row per airport
    assert [g.rows_written for g in first.groups if g.group == f"{GROUP}:v0"] == [3]
    registry.promote(settings, "flight_delay", version.version)
    run = predict_window(settings, "flight_delay", TimeRange.of("2013-01-09", "2013-01-10"))
    assert run.rows > 100
    ((scored,),) = query(settings, "select count(*) from predictions.flight_delay where model_version = ?",
                         [version.version])
    assert scored == run.rows
    created = {name for _, name in warehouse_tables(settings) - before}
    assert GROUP not in created and TABLE not in created

    # nothing new upstream: an incremental run reads only the rows loaded at the watermark (inclusive)
    report = refresh_online_store(settings, "sqlite")
    (group,) = [g for g in report.groups if g.group == f"{GROUP}:v0"]
    assert (group.mode, group.source_rows, group.rows_written) == ("incremental", 3, 0)

    upstream_path(settings).unlink()  # an unreadable upstream is reported, the other groups go on
    report = refresh_online_store(settings, "sqlite")
    assert "no DuckDB file at" in report.unreadable[f"{GROUP}:v0"]
    assert report.groups
