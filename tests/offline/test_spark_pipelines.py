"""Training and batch inference with FTI_ENGINE=spark: the same snapshot, model and scores as on DuckDB.

The DuckDB home is a copy of `built_home` (dbt-built); flight_delay's tables are copied from it into the Spark
warehouse as they are, so any difference comes from running the pipelines on Spark. On Spark the feature
rows, the snapshot table and the predictions live in Spark; the registry and snapshot registry (state, which
needs transactions) in the home's embedded DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import shutil

import ibis
import pyarrow as pa
import pytest
from fti_testing import copy_home

from models_ml.core.time import day_window
from models_ml.definitions.catalog import load_catalog
from models_ml.inference.batch import predict as pr
from models_ml.inference.batch.pipeline import predict_window
from models_ml.offline.store import opened, opened_state, opened_with_state, state_backend_class
from models_ml.training import pipeline as tp
from models_ml.training import registry
from models_ml.training.snapshot import REGISTRY, SCHEMA, _render_timestamp

pytestmark = pytest.mark.slow

UTC = dt.timezone.utc
MODEL = "flight_delay"
SCORED_DAYS = (dt.date(2013, 1, 9), 2)  # after the training range
# a small, fast model and a gate that lets it through: the test is about engines, not model quality
SMALL = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "min_data_per_group": 10,
         "early_stopping_rounds": 10}
LENIENT = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0, "champion_tolerance": 1.0}


def _run(settings):
    """Train flight_delay on its first eight days, then score the last two: the project's own paths."""
    plan = tp.plan_training(settings, MODEL, start="2013-01-01", end="2013-01-09", fractions=[0.6, 0.2, 0.2],
                            overrides=SMALL, gate_overrides=LENIENT)
    run = tp.run_training(settings, plan)
    scored_at = dt.datetime(2013, 1, 8, 22, tzinfo=UTC)
    prediction = predict_window(settings, MODEL, day_window(*SCORED_DAYS), num_threads=1, scored_at=scored_at)
    with opened(settings) as store:
        predictions = store.to_arrow(store.table(*pr.predictions_relation(MODEL)))
    return run, prediction, predictions


@pytest.fixture(scope="module")
def runs(built_home, spark_settings, tmp_path_factory):
    """(DuckDB run, Spark run), each (training run, prediction run, predictions table)."""
    from models_ml.offline.spark_store import SparkStore, ident

    duck = copy_home(built_home, tmp_path_factory.mktemp("duck") / "home")
    # the catalog of the same project: the manifest, fresh (a copy newer than the project's files)
    spark_settings.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(built_home.manifest_path, spark_settings.manifest_path)
    view = load_catalog(spark_settings).view(MODEL)
    relations = {(ref.group.schema, ref.group.relation) for ref in view.features}
    relations |= {(view.label.schema, view.label.relation), view.scoring_relation}
    spark = SparkStore.open(spark_settings)
    with opened(built_home, read_only=True) as source:
        for schema, name in sorted(relations):
            spark.create_table(schema, name, source.to_arrow(source.table(schema, name)), overwrite=True)
    yield _run(duck), _run(spark_settings)
    for schema in {schema for schema, _ in relations} | {SCHEMA, pr.predictions_relation(MODEL)[0]}:
        spark.session.sql(f"drop database if exists {ident(schema)} cascade")
    shutil.rmtree(spark_settings.models_dir, ignore_errors=True)
    spark_settings.warehouse_path.unlink(missing_ok=True)


def test_the_state_lives_in_duckdb_and_the_rows_in_spark(runs, spark_settings):
    (_, _, _), (run, _, _) = runs
    assert state_backend_class(spark_settings).name == "duckdb"
    with opened_with_state(spark_settings, read_only=True) as (store, state):
        assert (store.name, state.name) == ("spark", "duckdb")
        assert store.exists(SCHEMA, run.snapshot.snapshot_id)  # the snapshot's rows: on Spark
        assert not state.exists(SCHEMA, run.snapshot.snapshot_id)
        assert state.scalar(f"select count(*) from {REGISTRY} where snapshot_id = ?", [run.snapshot.snapshot_id]) == 1
        assert store.exists(*pr.predictions_relation(MODEL))
        assert not state.exists(*pr.predictions_relation(MODEL))
    with opened_state(spark_settings, read_only=True) as state:
        assert state.exists(registry.SCHEMA, "model_versions")
    assert registry.get_aliases(spark_settings, MODEL)[registry.CHAMPION] == run.version.version


def test_a_snapshot_built_on_spark_has_the_id_it_has_on_duckdb(runs):
    (duck, _, _), (spark, _, _) = runs
    assert (spark.snapshot.snapshot_id, spark.snapshot.content_hash) == (
        duck.snapshot.snapshot_id, duck.snapshot.content_hash)


def test_training_on_spark_gives_the_rows_and_model_it_gives_on_duckdb(runs):
    (duck, _, _), (spark, _, _) = runs
    assert spark.snapshot.reused is False
    assert spark.snapshot.row_count == duck.snapshot.row_count
    assert spark.splits.as_dict()["rows"] == duck.splits.as_dict()["rows"]
    assert spark.splits.train.equals(duck.splits.train)
    assert spark.model.booster.model_to_string() == duck.model.booster.model_to_string()
    assert (spark.alias, spark.gate.passed) == (duck.alias, duck.gate.passed) == (registry.CHAMPION, True)
    assert spark.evaluation.metrics.as_dict() == duck.evaluation.metrics.as_dict()


def test_batch_inference_on_spark_writes_the_scores_duckdb_writes(runs):
    (_, duck_run, duck), (_, spark_run, spark) = runs
    assert (spark_run.rows, spark_run.flagged_rows, spark_run.deleted) == (duck_run.rows, duck_run.flagged_rows, 0)
    assert spark_run.rows > 100
    assert spark.schema.equals(duck.schema)
    order = [(f.name, "ascending") for f in duck.schema if not pa.types.is_list(f.type)]
    assert spark.sort_by(order).to_pylist() == duck.sort_by(order).to_pylist()  # the scores bit for bit


def test_predicting_a_window_again_on_spark_replaces_it(runs, spark_settings):
    (_, first, _), _ = runs
    again = predict_window(spark_settings, MODEL, day_window(*SCORED_DAYS), num_threads=1,
                           scored_at=dt.datetime(2013, 1, 8, 23, tzinfo=UTC))
    assert (again.rows, again.deleted) == (first.rows, first.rows)
    with opened(spark_settings) as store:
        assert store.to_arrow(store.table(*pr.predictions_relation(MODEL))).num_rows == first.rows


def test_a_timestamp_renders_to_the_same_hash_text_on_spark_as_on_duckdb(spark_settings):
    """The content hash's rendering of times, at the edges of its rounding (see snapshot._render_timestamp)."""
    from models_ml.offline.spark_store import SparkStore

    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    times = [epoch + dt.timedelta(seconds=s, microseconds=us)
             for s in (-2, -1, 0, 1, 2, 1_357_000_001) for us in (0, 1, 499_999, 500_000, 500_001, 999_999)]
    rows = pa.table({"i": range(len(times)), "t": pa.array(times, pa.timestamp("us", "UTC"))})
    spark = SparkStore.open(spark_settings)
    spark_table = spark.arrow_table(rows)
    on_spark = spark.to_arrow(spark_table.select("i", text=_render_timestamp(spark_table.t)).order_by("i"))
    duck_table = ibis.memtable(rows)
    on_duckdb = duck_table.select("i", text=_render_timestamp(duck_table.t)).order_by("i").to_pyarrow()
    assert on_spark["text"].to_pylist() == on_duckdb["text"].to_pylist()
    # DuckDB's first rendering rounded epoch seconds half to even: 0.5 s shows 0, 1.5 s shows 2
    assert on_duckdb["text"].to_pylist()[15] == "0.500000"
    assert on_duckdb["text"].to_pylist()[21] == "2.500000"


def test_fti_predict_on_the_spark_engine_rewrites_the_window_with_the_same_scores(runs, spark_settings,
                                                                                 monkeypatch):
    """The command line with FTI_ENGINE=spark: `fti predict` runs the batch-inference flow on the Spark store
    (this process's session), and scoring the window again replaces its rows with the same scores."""
    from fti.cli import main

    (_, _, _), (_, spark_run, before) = runs
    monkeypatch.setenv("FTI_ENGINE", "spark")
    monkeypatch.setenv("FTI_SPARK_MASTER", spark_settings.spark_master)
    day, days = SCORED_DAYS
    assert main(["--home", str(spark_settings.home), "predict", "--model", MODEL, "--day", day.isoformat(),
                 "--days", str(days)]) == 0
    with opened(spark_settings) as store:
        assert store.name == "spark"
        after = store.to_arrow(store.table(*pr.predictions_relation(MODEL)))
    same = [name for name in before.schema.names if name != "scored_at"]  # scored now, not at the fixture's time
    order = [(name, "ascending") for name in same if not pa.types.is_list(before.schema.field(name).type)]
    assert after.num_rows == before.num_rows == spark_run.rows
    assert after.select(same).sort_by(order).to_pylist() == before.select(same).sort_by(order).to_pylist()
