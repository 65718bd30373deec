"""Batch inference: pinned lineage, refusals, missing-feature flags, idempotent and crash-safe writes, no skew.

Most tests use a small generated warehouse (flights every 13 minutes over 27 days, an hourly carrier and
weather group) and a model trained on its first 19 days; the skew test uses the real ten-day slice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fti_testing import (
    TOY_CARRIER,
    TOY_WEATHER,
    fit_for_registry,
    make_toy_warehouse,
    toy_catalog,
    toy_group,
)

from models_ml.core.settings import load_settings
from models_ml.core.time import TimeRange, day_window
from models_ml.definitions.catalog import Catalog, FeatureRef, load_catalog
from models_ml.inference.batch import pipeline as bp
from models_ml.inference.batch import predict as pr
from models_ml.offline import retrieval
from models_ml.offline.duckdb_store import DuckDBStore
from models_ml.offline.store import opened
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import TimeSplit

UTC = dt.timezone.utc
DAY = "2024-01-24"  # Y's weather has a gap this day; the model was trained before it
TABLE = 'predictions."toy"'
CARRIER, WEATHER = TOY_CARRIER, TOY_WEATHER


def make_warehouse(path) -> None:
    """Carriers AA/BB/CC have hourly stats, DD none; airports X/Y hourly weather (Y none on 2024-01-24), Z none."""
    make_toy_warehouse(path, gaps=True)


FAST = tr.TrainConfig(num_boost_round=40, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20,
                      min_data_per_group=10, learning_rate=0.2)


def train_and_register(settings, catalog: Catalog, *, promote=True, lineage_versions=None) -> registry.ModelVersion:
    """Train on [2024-01-01, 2024-01-20) and register (as the view's model) with the snapshot's lineage."""
    model, evaluation, gate, lineage = fit_for_registry(settings, catalog.view("toy"),
                                                        TimeRange.of("2024-01-01", "2024-01-20"),
                                                        TimeSplit(fractions=(0.6, 0.2, 0.2)), FAST)
    if lineage_versions:
        lineage = dataclasses.replace(lineage, feature_group_versions=lineage_versions)
    version = registry.register_model(settings, "toy", model, evaluation, gate, lineage)
    if promote:
        registry.promote(settings, "toy", version.version, publish=False)
    return version


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A home with the toy warehouse and a champion v1; tests work on copies."""
    settings = load_settings(tmp_path_factory.mktemp("predict") / "home")
    settings.ensure_home()
    make_warehouse(settings.warehouse_path)
    train_and_register(settings, toy_catalog())
    return settings


@pytest.fixture()
def home(template, tmp_path):
    shutil.copytree(template.home, tmp_path / "home")
    settings = load_settings(tmp_path / "home")
    # The registry stores absolute model directories: point the copy's rows at its own files.
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("update registry.model_versions set model_dir = replace(model_dir, ?, ?)",
                    [str(template.home), str(settings.home)])
    return settings


def run(settings, day=DAY, days=1, catalog=None, **kwargs) -> bp.PredictionRun:
    return bp.predict_window(settings, "toy", day_window(day, days), catalog=catalog or toy_catalog(),
                             num_threads=1, **kwargs)


def rows(settings, sql=f"select * from {TABLE} order by flight_id") -> list[dict]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r)) for r in cursor.fetchall()]


def scalar(settings, sql, params=None):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchone()[0]


def spine_count(settings, start=DAY, end="2024-01-25") -> int:
    return scalar(settings, "select count(*) from labels.label_toy where scheduled_at >= ?::timestamptz "
                            "and scheduled_at < ?::timestamptz", [f"{start} 00:00:00+00", f"{end} 00:00:00+00"])


# --------------------------------------------------------------------------------------------------
# Windows and scoring


def test_day_window_is_half_open_utc_and_table_names():
    window = day_window("2013-12-01", 2)
    assert (window.start, window.end) == (dt.datetime(2013, 12, 1, tzinfo=UTC), dt.datetime(2013, 12, 3, tzinfo=UTC))
    with pytest.raises(ValueError):
        day_window("2013-12-01", 0)
    assert pr.table_name("flight_delay") == 'predictions."flight_delay"'
    assert pr.table_name("flight_delay", "challenger") == 'predictions."flight_delay__challenger"'


def test_scores_every_flight_scheduled_in_the_window_with_lineage(home):
    scored_at = dt.datetime(2030, 1, 1, tzinfo=UTC)
    result = run(home, scored_at=scored_at)
    got = rows(home)
    assert result.rows == len(got) == spine_count(home) > 0
    assert all(dt.datetime(2024, 1, 24, tzinfo=UTC) <= r["scheduled_at"] < dt.datetime(2024, 1, 25, tzinfo=UTC)
               for r in got)
    assert all(r["prediction_at"] == r["scheduled_at"] - dt.timedelta(hours=2) for r in got)
    assert all(0.0 < r["score"] < 1.0 for r in got)
    assert {(r["model_name"], r["model_version"], r["feature_view_version"], r["scored_at"]) for r in got} == {
        ("toy", 1, 1, scored_at)}
    assert list(got[0]) == ["flight_id", "prediction_at", "scheduled_at", "score", "has_missing_features",
                            "missing_feature_groups", "model_name", "model_version", "feature_view_version",
                            "scored_at"]
    assert result.mean_score == pytest.approx(np.mean([r["score"] for r in got]))
    assert set(result.seconds) >= {"features", "prepare_features", "predict", "write"}


def test_scores_equal_the_registered_model_on_the_same_features(home):
    version, model = registry.load(home, "toy")
    with opened(home) as store:
        view = pr.inference_view(store, toy_catalog(), version)
        features = pr.load_features(store, view, day_window(DAY))
    assert np.array_equal(pr.score(model, features, num_threads=2), model.predict(features))
    assert np.array_equal(pr.score(model, features, num_threads=1), model.predict(features))


def test_batch_inference_scores_with_compiled_trees_unless_turned_off(home):
    version, model = bp.resolve_model(home, "toy", registry.CHAMPION)
    assert model.compiled is not None and model.compiled.path.parent == home.compiled_trees_dir
    _, lightgbm = bp.resolve_model(dataclasses.replace(home, compiled_trees=False), "toy", registry.CHAMPION)
    assert lightgbm.compiled is None
    with opened(home) as store:
        view = pr.inference_view(store, toy_catalog(), version)
        features = pr.load_features(store, view, day_window(DAY))
    assert np.array_equal(pr.score(model, features, num_threads=2), pr.score(lightgbm, features, num_threads=2))


def test_inference_spine_needs_no_target(home):
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("alter table labels.label_toy drop column is_delayed")
    assert run(home).rows == spine_count(home)


# --------------------------------------------------------------------------------------------------
# Missing features: scored and flagged, never dropped


def test_rows_with_missing_feature_groups_are_scored_and_flagged(home):
    result = run(home)
    got = {r["flight_id"]: r for r in rows(home)}
    assert len(got) == spine_count(home)
    # An independent reading of the rule: carrier DD has no stats; Z has no weather; Y's weather stops at
    # 2024-01-24 00:00, so from 03:00 on its latest row is older than the 3-hour TTL.
    expected = {}
    with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
        spine = con.execute(f"""
            select flight_id, carrier_code, origin_airport_code, prediction_at from labels.label_toy
            where scheduled_at >= '{DAY} 00:00:00+00' and scheduled_at < '2024-01-25 00:00:00+00'""").fetchall()
    for flight_id, carrier, origin, prediction_at in spine:
        missing = []
        if carrier == "DD":
            missing.append("fg_carrier__stats")
        if origin == "Z" or (origin == "Y" and prediction_at > dt.datetime(2024, 1, 24, 2, tzinfo=UTC)):
            missing.append("fg_airport__weather")
        expected[flight_id] = missing
    assert {k: r["missing_feature_groups"] for k, r in got.items()} == expected
    assert all(r["has_missing_features"] == bool(expected[k]) for k, r in got.items())
    assert all(r["score"] is not None and not np.isnan(r["score"]) for r in got.values())
    assert result.flagged_rows == sum(1 for m in expected.values() if m) > 0
    assert result.missing_by_group == {
        "fg_carrier__stats": sum("fg_carrier__stats" in m for m in expected.values()),
        "fg_airport__weather": sum("fg_airport__weather" in m for m in expected.values()),
    }
    complete = [r for r in got.values() if not r["has_missing_features"]]
    assert complete and all(r["missing_feature_groups"] == [] for r in complete)


def test_a_found_row_with_null_values_is_not_flagged(home):
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("update features.fg_airport__weather_v1 set temperature_f = null, condition = null "
                    "where airport_code = 'X'")
    run(home)
    from_x = rows(home, f"select f.missing_feature_groups from {TABLE} f join labels.label_toy l using (flight_id) "
                        f"where l.origin_airport_code = 'X'")
    assert from_x and all("fg_airport__weather" not in r["missing_feature_groups"] for r in from_x)


# --------------------------------------------------------------------------------------------------
# Idempotent, transactional writes


def test_rerunning_a_day_replaces_its_rows_and_leaves_other_days(home):
    first = run(home, scored_at=dt.datetime(2030, 1, 1, tzinfo=UTC))
    run(home, day="2024-01-25", scored_at=dt.datetime(2030, 1, 1, tzinfo=UTC))
    other_day = rows(home, f"select * from {TABLE} where scheduled_at >= '2024-01-25' order by flight_id")

    again = run(home, scored_at=dt.datetime(2030, 1, 2, tzinfo=UTC))
    assert again.rows == first.rows and again.deleted == first.rows
    day_rows = rows(home, f"select * from {TABLE} where scheduled_at < '2024-01-25' order by flight_id")
    assert len(day_rows) == first.rows
    assert {r["scored_at"] for r in day_rows} == {dt.datetime(2030, 1, 2, tzinfo=UTC)}
    assert rows(home, f"select * from {TABLE} where scheduled_at >= '2024-01-25' order by flight_id") == other_day
    assert scalar(home, f"select count(*) - count(distinct flight_id) from {TABLE}") == 0


def test_a_flight_moved_to_another_day_keeps_only_its_new_prediction(home):
    run(home)  # 2024-01-24
    moved = rows(home, f"select flight_id from {TABLE} order by flight_id limit 1")[0]["flight_id"]
    with duckdb.connect(str(home.warehouse_path)) as con:  # rescheduled by a day, as a late update would
        con.execute("update labels.label_toy set scheduled_at = scheduled_at + interval 1 day, "
                    "prediction_at = prediction_at + interval 1 day where flight_id = ?", [moved])
    result = run(home, day="2024-01-25")
    kept = rows(home, f"select flight_id, scheduled_at from {TABLE} where flight_id = '{moved}'")
    assert len(kept) == 1 and kept[0]["scheduled_at"] >= dt.datetime(2024, 1, 25, tzinfo=UTC)
    assert result.deleted == 1  # the old day's row of that flight, nothing else
    assert scalar(home, f"select count(*) - count(distinct flight_id) from {TABLE}") == 0


def test_a_new_champion_replaces_the_old_versions_scores(home):
    run(home)
    train_and_register(home, toy_catalog())  # v2, promoted
    result = run(home)
    assert result.model_version == 2
    assert {r["model_version"] for r in rows(home)} == {2}
    assert len(rows(home)) == result.rows


def test_a_failure_between_delete_and_insert_keeps_the_previous_rows(home, monkeypatch):
    run(home, scored_at=dt.datetime(2030, 1, 1, tzinfo=UTC))
    before = rows(home)

    def broken_insert(store, target, view):
        assert store.scalar(f"select count(*) from {target}") == 0  # the delete did happen
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(DuckDBStore, "_insert_rows", broken_insert)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(home, scored_at=dt.datetime(2030, 1, 2, tzinfo=UTC))
    assert rows(home) == before


def test_a_killed_process_between_delete_and_insert_keeps_the_previous_rows(home):
    run(home)
    before = rows(home)
    script = textwrap.dedent(f"""
        import os, duckdb
        con = duckdb.connect({str(home.warehouse_path)!r})
        con.execute("begin transaction")
        con.execute("delete from {TABLE.replace('"', '')}")
        os._exit(9)  # dies mid-transaction, before the insert and the commit
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert rows(home) == before


def test_a_window_with_nothing_to_score_fails_naming_the_spine_and_what_it_holds(home):
    run(home, day="2024-01-02")
    before = rows(home)
    with pytest.raises(pr.EmptyWindow) as refusal:
        run(home, day="2025-06-01")
    assert str(refusal.value) == (
        "nothing to score: labels.label_toy has no row with scheduled_at in [2025-06-01 00:00, 2025-06-02 00:00) "
        "UTC (it holds 2024-01-01 02:00 to 2024-01-28 03:47 UTC); pick a day in that range, or run the feature "
        "pipeline to land more")
    assert rows(home) == before  # the published predictions are untouched


# --------------------------------------------------------------------------------------------------
# Lineage: pinned group versions, refusals


def test_refuses_a_trained_on_group_version_missing_from_the_catalog(home):
    train_and_register(home, toy_catalog(), lineage_versions={"fg_carrier__stats": 1, "fg_airport__weather": 2})
    with pytest.raises(pr.PredictionError, match=r"fg_airport__weather v2, which is not in the catalog"):
        run(home)
    assert not scalar(home, "select count(*) from information_schema.tables where table_schema = 'predictions'")


def test_refuses_a_trained_on_group_version_that_is_not_built(home):
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("drop table features.fg_airport__weather_v1")
    with pytest.raises(pr.PredictionError) as refusal:
        run(home)
    message = str(refusal.value)
    assert "fg_airport__weather v1" in message and "not built" in message
    assert "features.fg_airport__weather_v1" in message


def test_refuses_when_the_view_no_longer_selects_a_trained_on_group(home):
    catalog = toy_catalog()
    view = catalog.views["toy"]
    catalog.views["toy"] = dataclasses.replace(view, version=2, features=view.features[:1])
    with pytest.raises(pr.PredictionError, match="fg_airport__weather v1.*no longer selects"):
        run(home, catalog=catalog)


def test_a_model_keeps_reading_the_group_version_it_was_trained_on(home):
    """The view moves to weather v2 (different values); the v1 champion must still be fed from v1."""
    weather_v2 = toy_group("fg_airport__weather", ("airport_code",),
                           ["airport_code", "event_at", "temperature_f", "condition", "loaded_at"],
                           dt.timedelta(hours=3), version=2)
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("create table features.fg_airport__weather_v2 as "
                    "select * replace (temperature_f + 1000 as temperature_f) from features.fg_airport__weather_v1")
    catalog = toy_catalog(weather=weather_v2, extra_groups=[WEATHER])
    version, model = registry.load(home, "toy")
    with opened(home) as store:
        view = pr.inference_view(store, catalog, version)
        assert {ref.group.name: ref.group.version for ref in view.features} == {
            "fg_carrier__stats": 1, "fg_airport__weather": 1}
        features = pr.load_features(store, view, day_window(DAY))
    assert pc.max(features["origin_temperature_f"]).as_py() < 100
    assert run(home, catalog=catalog).rows == spine_count(home)


# --------------------------------------------------------------------------------------------------
# The default day


def default_day(settings) -> dt.date | None:
    with opened(settings) as store:
        return pr.default_day(store, toy_catalog().views["toy"], pr.predictions_relation("toy"))


def test_a_group_declared_unique_per_entity_that_is_not_is_refused(home):
    """A dbt `unique` test on the entity lets the join skip the as-of machinery; a table that breaks that
    promise (a failing test leaves it built) would multiply spine rows, so the run counts them and refuses."""
    lying = dataclasses.replace(CARRIER, unique_entity=True)  # hourly rows per carrier: not unique
    view = dataclasses.replace(toy_catalog().view("toy"), features=(
        FeatureRef(lying, ("delayed_share",), {"carrier_code": "carrier_code"}, "carrier_"),
    ))
    expected = spine_count(home, DAY, "2024-01-25")
    with opened(home) as store:
        with pytest.raises(pr.PredictionError, match=r"declared unique per entity \(fg_carrier__stats\) has dup"):
            pr.load_features(store, view, day_window(DAY))
        honest = dataclasses.replace(view, features=(dataclasses.replace(view.features[0], group=CARRIER),))
        assert pr.load_features(store, honest, day_window(DAY)).num_rows == expected > 0


def test_default_day_starts_at_the_newest_data_then_follows_the_unscored_rows(home):
    newest = scalar(home, "select max(scheduled_at) from labels.label_toy").astimezone(UTC).date()
    assert default_day(home) == newest  # nothing scored yet: start at the newest data
    run(home, day="2024-01-20")
    assert default_day(home) == dt.date(2024, 1, 21)  # the first day with rows after the latest scored one
    run(home, day=newest.isoformat())
    assert default_day(home) == newest + dt.timedelta(days=1)  # all scored: the next day (nothing to do yet)


# --------------------------------------------------------------------------------------------------
# No training/serving skew, on the real flights


def test_inference_features_equal_the_training_snapshot_on_real_flights(scratch_home):
    """The same flights get the same feature values, and the same model input, in training and inference."""
    catalog = load_catalog(scratch_home)
    view = catalog.view("flight_delay")
    with opened(scratch_home) as store:
        info = sn.build_snapshot(store, view, TimeRange.of("2013-01-02", "2013-01-10"))
        snapshot = store.to_arrow(info.table(store))
        window = day_window("2013-01-04", 3)
        inference = pr.load_features(store, view, window)
        spine_rows = int(retrieval.inference_spine(store, view, window).count().to_pyarrow().as_py())
    assert inference.num_rows == spine_rows > 1000
    assert view.label.target not in inference.column_names

    key = view.label.entity[0]
    columns = [key, view.label.spine_time, *view.feature_columns]
    ids = pc.is_in(snapshot[key], inference[key])
    train_side = snapshot.filter(ids).select(columns).sort_by(key)
    serve_side = inference.filter(pc.is_in(inference[key], train_side[key])).select(columns).sort_by(key)
    assert train_side.num_rows == serve_side.num_rows > 1000
    assert train_side.equals(serve_side)  # every value, NULLs included

    spec = tr.fit_spec(snapshot, view.feature_columns, view.label.target, tr.TrainConfig(), view.name, view.version)
    left, right = tr.prepare_features(train_side, spec), tr.prepare_features(serve_side, spec)
    assert left.equals(right)

    flagged, _ = pr.missing_groups(inference, view)
    assert pc.sum(pc.list_value_length(flagged)).as_py() > 0  # the real slice does have gaps (new planes, ...)
    assert json.dumps(info.feature_group_versions)  # the lineage the inference view would be pinned to


def test_prepare_features_encodes_categories_exactly_like_pandas():
    """prepare_features computes category codes in Arrow; they must equal pandas' own encoding."""
    import pandas as pd

    table = pa.table({
        "carrier": pa.chunked_array([["AA", None, "ZZ"], ["BB", "AA"]]),  # NULL, unseen, two chunks
        "hour": pa.array([5, 7, None, 5, 23], pa.int32()),  # a forced-categorical integer
        "kind": pa.array(["x", "y", "x", "y", "x"]).dictionary_encode(),
        "empty": pa.array(["a", "b", None, "c", "a"]),  # no category survived training
        "x": pa.array([1.5, None, 3.0, 4.0, 5.0]),
    })
    spec = tr.ModelSpec("v", 1, "y", ["carrier", "hour", "kind", "empty", "x"],
                        {"carrier": ["AA", "BB", "CC"], "hour": ["23", "5"], "kind": ["x", "y"], "empty": []})
    frame = tr.prepare_features(table, spec)
    for name, categories in spec.categories.items():
        strings = tr._as_strings(table[name]).to_numpy(zero_copy_only=False)
        reference = pd.Categorical(strings, categories=categories)
        assert frame[name].cat.codes.tolist() == reference.codes.tolist(), name
        assert list(frame[name].cat.categories) == categories
    assert frame["carrier"].cat.codes.tolist() == [0, -1, -1, 1, 0]
    assert frame["hour"].cat.codes.tolist() == [1, -1, -1, 1, 0]
    assert tr.prepare_features(table.slice(0, 0), spec).shape == (0, 5)
