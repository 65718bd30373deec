"""The offline store on Spark: the engine settings, the session's rules, and a snapshot and a batch-inference
window of the real flights slice built through Spark with the same content as through DuckDB.

The DuckDB home (`built_home`, dbt-built) is the reference: its feature groups, label and inference spine are
copied into the Spark warehouse as they are, so any difference comes from the join, not from dbt on Spark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import ibis
import pyarrow as pa
import pytest

from models_ml.core.settings import SettingsError, load_settings
from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import load_catalog
from models_ml.offline.pit import spine_time_bounds
from models_ml.offline.retrieval import features_expr, spine_expr
from models_ml.offline.store import OfflineStoreError, open_offline_store, opened
from models_ml.training.snapshot import content_hash, snapshot_expr

UTC = dt.timezone.utc
TRAINING = TimeRange(dt.datetime(2013, 1, 4, tzinfo=UTC), dt.datetime(2013, 1, 8, tzinfo=UTC))
SCORING = TimeRange(dt.datetime(2013, 1, 8, tzinfo=UTC), dt.datetime(2013, 1, 10, tzinfo=UTC))


# -- settings (no Spark needed) ------------------------------------------------------------------------

def test_the_engine_picks_the_offline_store_and_dbt_target_and_a_wrong_one_is_named(monkeypatch, tmp_path):
    monkeypatch.delenv("FTI_OFFLINE_STORE", raising=False)
    monkeypatch.delenv("FTI_DBT_TARGET", raising=False)
    monkeypatch.delenv("FTI_SPARK_MASTER", raising=False)
    monkeypatch.delenv("FTI_ENGINE", raising=False)
    default = load_settings(tmp_path)
    assert (default.engine, default.offline_store, default.dbt_target, default.spark_master) == (
        "duckdb", "duckdb", "dev", "local[2]")
    monkeypatch.setenv("FTI_ENGINE", " Spark ")
    spark = load_settings(tmp_path)
    assert (spark.engine, spark.offline_store, spark.dbt_target) == ("spark", "spark", "spark")
    assert spark.spark_dir == tmp_path.resolve() / "spark"
    monkeypatch.setenv("FTI_ENGINE", "sparky")
    with pytest.raises(SettingsError, match=r"^FTI_ENGINE='sparky' is not an engine fti runs on; set it to duckdb "
                                            r"or spark"):
        load_settings(tmp_path)


@pytest.mark.parametrize(("master", "ok"), [("local", True), ("local[1]", True), ("local[*]", True),
                                            ("sc://spark.internal:15002", True), ("yarn", False),
                                            ("local[0]", False), ("spark://host:7077", False)])
def test_the_spark_master_is_local_or_a_connect_url(monkeypatch, tmp_path, master, ok):
    monkeypatch.setenv("FTI_SPARK_MASTER", master)
    if ok:
        assert load_settings(tmp_path).spark_master == master
    else:
        with pytest.raises(SettingsError, match=r"FTI_SPARK_MASTER=.*set it to local\[N\].*or sc://"):
            load_settings(tmp_path)


def test_session_config_puts_the_warehouse_and_metastore_under_the_home(tmp_path):
    pytest.importorskip("sqlglot")
    from models_ml.offline.spark_store import session_config

    settings = dataclasses.replace(load_settings(tmp_path / "h"), spark_master="local[2]")
    config = session_config(settings)
    root = settings.home / "spark"
    assert config["spark.sql.warehouse.dir"] == str(root / "warehouse")
    assert config["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true")
    assert (config["spark.master"], config["spark.sql.session.timeZone"], config["spark.sql.shuffle.partitions"],
            config["spark.sql.sources.partitionOverwriteMode"], config["spark.ui.enabled"]) == (
        "local[2]", "UTC", "4", "dynamic", "false")
    assert config["spark.hadoop.hive.downloaded.resources.dir"] == str(root / "hive_resources")


# -- the session's rules -----------------------------------------------------------------------------

pytest_slow = pytest.mark.slow


@pytest_slow
def test_a_second_home_in_the_same_process_is_refused(spark_settings, tmp_path):
    other = dataclasses.replace(spark_settings, home=tmp_path / "other")
    with pytest.raises(OfflineStoreError, match=r"Spark session keeps its warehouse at .*open one home per process"):
        open_offline_store(other)
    with pytest.raises(OfflineStoreError, match=r"no warehouse at .*fti features run"):
        open_offline_store(other, read_only=True)


@pytest_slow
def test_the_hive_session_keeps_its_folder_under_the_home(spark_store, spark_settings):
    spark_store.session.sql("show databases").collect()  # the Hive session is started
    assert (spark_settings.spark_dir / "hive_resources").is_dir()


@pytest_slow
def test_a_session_left_in_another_zone_is_put_back_to_utc(spark_store, spark_settings):
    spark_store.session.conf.set("spark.sql.session.timeZone", "America/New_York")
    with opened(spark_settings) as store:
        assert store.session.conf.get("spark.sql.session.timeZone") == "UTC"
        instant = dt.datetime(2013, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first of the two
        table = store.arrow_table(pa.table({"at": pa.array([instant], pa.timestamp("us", "America/New_York"))}))
        assert store.to_arrow(table)["at"].to_pylist() == [instant]


@pytest_slow
def test_naive_timestamps_stay_naive_and_the_join_refuses_them(spark_store):
    naive = pa.table({"k": [1], "t": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us"))})
    spark_store.create_table("s", "naive", naive)
    assert spark_store.arrow_schema("s", "naive").field("t").type == pa.timestamp("us")
    spine = spark_store.table("s", "naive")
    with pytest.raises(ValueError, match=r"spine: time column 't' is a naive timestamp"):
        spine_time_bounds(spine, "t")


# -- the same answers as DuckDB on the real slice ------------------------------------------------------

@pytest.fixture(scope="module")
def engines(built_home, spark_settings):
    """(view, DuckDB store, Spark store): flight_delay v1's tables copied from the dbt-built DuckDB home."""
    from models_ml.offline.spark_store import SparkStore, ident

    view = load_catalog(built_home).view("flight_delay", 1)
    relations = {(ref.group.schema, ref.group.relation) for ref in view.features}
    relations |= {(view.label.schema, view.label.relation), view.scoring_relation}
    spark = SparkStore.open(spark_settings)
    with opened(built_home, read_only=True) as duck:
        for schema, name in sorted(relations):
            spark.create_table(schema, name, duck.to_arrow(duck.table(schema, name)), overwrite=True)
        yield view, duck, spark
    for schema in {schema for schema, _ in relations}:
        spark.session.sql(f"drop database if exists {ident(schema)} cascade")


@pytest_slow
def test_a_snapshot_on_spark_has_the_content_hash_it_has_on_duckdb(engines):
    """The rows Spark's join gives hash as DuckDB's do. (The hash is taken over the Arrow result on DuckDB:
    in Spark, Ibis cannot extract a timestamp's microseconds, which the hash's rendering of times uses.)"""
    view, duck, spark = engines
    results = []
    for store in (duck, spark):
        bounds = spine_time_bounds(spine_expr(store, view, TRAINING), view.label.spine_time)
        results.append(store.to_arrow(snapshot_expr(store, view, TRAINING, bounds)))
    assert results[0].num_rows == results[1].num_rows == bounds.rows > 1000
    assert results[0].schema.equals(results[1].schema)
    on_duckdb = [content_hash(ibis.memtable(result)) for result in results]
    assert on_duckdb[0] == on_duckdb[1]


def _sorted_rows(table: pa.Table, keys: list[str]) -> list[dict]:
    return table.sort_by([(k, "ascending") for k in keys]).to_pylist()


@pytest_slow
def test_a_batch_inference_window_on_spark_has_the_rows_it_has_on_duckdb(engines):
    view, duck, spark = engines
    keys = [*view.label.entity, view.label.spine_time]
    got = [store.to_arrow(features_expr(store, view, SCORING)) for store in (duck, spark)]
    assert got[0].schema.equals(got[1].schema)
    assert got[0].num_rows == got[1].num_rows > 100
    found = [c for c in got[1].column_names if c.startswith("__fti_found_")]
    assert all(got[1][c].null_count < got[1].num_rows for c in found)  # every group matched somewhere
    assert _sorted_rows(got[0], keys) == _sorted_rows(got[1], keys)
