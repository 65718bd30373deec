"""Training snapshots: point-in-time correctness on a hand-made warehouse, hashing, immutability, time splits."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import pytest
from fti_testing import toy_group

from models_ml.core.settings import load_settings
from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import FeatureRef, FeatureView, LabelSpec
from models_ml.offline.store import opened
from models_ml.training import snapshot as sn
from models_ml.training.splits import SPLIT_NAMES, TimeSplit, load_splits

UTC = dt.timezone.utc


def toy_view() -> FeatureView:
    carrier = toy_group("fg_carrier__stats", ("carrier_code",), [
        ("carrier_code", "varchar"), ("event_at", "timestamptz"), ("delayed_share", "double"), ("loaded_at", "timestamptz"),
    ])
    weather = toy_group("fg_airport__weather", ("airport_code",), [
        ("airport_code", "varchar"), ("event_at", "timestamptz"), ("temperature_f", "double"),
        ("condition", "varchar"), ("loaded_at", "timestamptz"),
    ], ttl=dt.timedelta(hours=3))
    label = LabelSpec(
        model="label_toy", schema="labels", relation="label_toy", entity=("flight_id",), spine_time="prediction_at",
        target="is_delayed", event_time="scheduled_at", request_features=("hour_local",),
        slices=("carrier_code", "origin_airport_code"),
    )
    return FeatureView(name="toy", version=3, description="", label=label, features=(
        FeatureRef(carrier, ("delayed_share",), {"carrier_code": "carrier_code"}, "carrier_"),
        FeatureRef(weather, ("temperature_f", "condition"), {"origin_airport_code": "airport_code"}, "origin_"),
    ))


# f4 shares f3's prediction time (a tie for the splits); f6 sits exactly on the window's end.
LABELS = """
insert into labels.label_toy values
 ('f1', 'AA', 'X', '2024-01-01 12:00:00+00', '2024-01-01 10:00:00+00', 12, true),
 ('f2', 'AA', 'X', '2024-01-01 14:00:00+00', '2024-01-01 12:00:00+00', 14, false),
 ('f3', 'BB', 'Y', '2024-01-02 12:00:00+00', '2024-01-02 10:00:00+00', 12, true),
 ('f4', 'CC', 'X', '2024-01-02 12:00:00+00', '2024-01-02 10:00:00+00', 12, false),
 ('f5', 'BB', 'Y', '2024-01-03 11:00:00+00', '2024-01-03 09:00:00+00', 11, false),
 ('f6', 'AA', 'X', '2024-01-04 02:00:00+00', '2024-01-04 00:00:00+00', 2, true)
"""
CARRIER = """
insert into features.fg_carrier__stats_v1 values
 ('AA', '2024-01-01 09:00:00+00', 0.10, '2024-01-05 00:00:00+00'),
 ('AA', '2024-01-01 10:00:00+00', 0.20, '2024-01-05 00:00:00+00'),   -- exactly at f1's time: used
 ('AA', '2024-01-01 10:01:00+00', 0.90, '2024-01-05 00:00:00+00'),   -- a minute after f1: never for f1
 ('AA', '2024-01-01 12:00:00+00', 0.30, '2024-01-05 00:00:00+00'),   -- tie on event time with ...
 ('AA', '2024-01-01 12:00:00+00', 0.35, '2024-01-06 00:00:00+00'),   -- ... this later-loaded row, which wins
 ('BB', '2024-01-02 11:00:00+00', 0.50, '2024-01-05 00:00:00+00')    -- after f3 (NULL there), before f5
"""
WEATHER = """
insert into features.fg_airport__weather_v1 values
 ('X', '2024-01-01 08:00:00+00', 1.0, 'clear', '2024-01-05 00:00:00+00'),  -- 2 h before f1 (ttl 3 h), 4 h before f2
 ('Y', '2024-01-02 09:30:00+00', 5.0, 'rain', '2024-01-05 00:00:00+00'),   -- f3; 23.5 h before f5: expired
 ('X', '2024-01-02 10:30:00+00', 9.0, 'snow', '2024-01-05 00:00:00+00')    -- after f4
"""


def make_warehouse(path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'")
        con.execute("create schema labels; create schema features")
        con.execute("""create table labels.label_toy (flight_id varchar, carrier_code varchar,
            origin_airport_code varchar, scheduled_at timestamptz, prediction_at timestamptz, hour_local integer,
            is_delayed boolean)""")
        con.execute("""create table features.fg_carrier__stats_v1 (carrier_code varchar, event_at timestamptz,
            delayed_share double, loaded_at timestamptz)""")
        con.execute("""create table features.fg_airport__weather_v1 (airport_code varchar, event_at timestamptz,
            temperature_f double, condition varchar, loaded_at timestamptz)""")
        con.execute(LABELS)
        con.execute(CARRIER)
        con.execute(WEATHER)


@pytest.fixture()
def store(tmp_path):
    settings = load_settings(tmp_path / "home")
    settings.ensure_home()
    make_warehouse(settings.warehouse_path)
    with opened(settings) as store:
        yield store


WINDOW = TimeRange.of("2024-01-01", "2024-01-04")


def rows_by_id(store, info) -> dict[str, dict]:
    return {r["flight_id"]: r for r in store.to_arrow(info.table(store)).to_pylist()}


def test_snapshot_joins_each_feature_as_of_the_prediction_time(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    rows = rows_by_id(store, info)
    assert sorted(rows) == ["f1", "f2", "f3", "f4", "f5"]  # f6 is at the (exclusive) end
    got = {k: (r["carrier_delayed_share"], r["origin_temperature_f"], r["origin_condition"]) for k, r in rows.items()}
    assert got == {
        "f1": (0.20, 1.0, "clear"),  # inclusive at t; the 10:01 row (0.90) is in f1's future
        "f2": (0.35, None, None),  # tie at 12:00 goes to the later load; weather 4 h old > ttl
        "f3": (None, 5.0, "rain"),  # BB's only row is an hour after f3
        "f4": (None, None, None),  # no CC rows; X weather is 26 h old or in the future
        "f5": (0.50, None, None),
    }
    assert info.row_count == 5 and info.feature_view_version == 3
    assert info.feature_group_versions == {"fg_carrier__stats": 1, "fg_airport__weather": 1}
    assert list(info.feature_columns) == ["hour_local", "carrier_delayed_share", "origin_temperature_f",
                                          "origin_condition"]


def test_no_feature_row_after_the_prediction_time_is_ever_used(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    snapshot = store.to_arrow(info.table(store)).to_pylist()
    features = store.to_arrow(store.table("features", "fg_carrier__stats_v1")).to_pylist()
    for row in snapshot:
        if row["carrier_delayed_share"] is None:
            continue
        sources = [f for f in features if f["carrier_code"] == row["carrier_code"]
                   and f["delayed_share"] == row["carrier_delayed_share"]]
        assert sources and all(f["event_at"] <= row["prediction_at"] for f in sources)


def test_same_inputs_same_id_and_hash_and_no_duplicate(store):
    first = sn.build_snapshot(store, toy_view(), WINDOW)
    again = sn.build_snapshot(store, toy_view(), WINDOW)
    assert (again.snapshot_id, again.content_hash) == (first.snapshot_id, first.content_hash)
    assert again.reused and not first.reused
    assert first.snapshot_id.startswith("snap_toy_") and len(first.snapshot_id) == len("snap_toy_") + 12
    assert store.execute(f"select count(*) from {sn.REGISTRY} where feature_view = 'toy'") == [(1,)]
    tables = [name for schema, name in store.relations() if schema == sn.SCHEMA]
    assert sorted(tables) == sorted([first.snapshot_id, "snapshot_registry"])  # no scratch table left


def test_id_and_hash_are_stable_across_releases(store):
    """The id and hash depend only on the definition and the data: a change to how the library stores or
    reads snapshots must not give existing models' snapshots new ids."""
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    assert (info.snapshot_id, info.content_hash) == (
        "snap_toy_fd2158590c86", "f2b0803d88066fec05db1e896c6ffb7159598611e2d89cd9bb430fe0025b3015")


def test_hash_ignores_row_order(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    store.execute(f"create table main.reordered as select * from {sn.SCHEMA}.{info.snapshot_id} order by flight_id desc")
    assert sn.content_hash(store.table("main", "reordered")) == info.content_hash


def test_changed_data_gives_a_new_snapshot_and_leaves_the_old_one_intact(store):
    first = sn.build_snapshot(store, toy_view(), WINDOW)
    store.execute("update features.fg_carrier__stats_v1 set delayed_share = 0.25 where delayed_share = 0.20")
    second = sn.build_snapshot(store, toy_view(), WINDOW)
    assert second.snapshot_id != first.snapshot_id and second.content_hash != first.content_hash
    assert rows_by_id(store, first)["f1"]["carrier_delayed_share"] == 0.20
    assert rows_by_id(store, second)["f1"]["carrier_delayed_share"] == 0.25
    assert {r["snapshot_id"] for r in store.query(f"select snapshot_id from {sn.REGISTRY}")} == {
        first.snapshot_id, second.snapshot_id}


def test_a_different_window_is_a_different_snapshot(store):
    first = sn.build_snapshot(store, toy_view(), WINDOW)
    wider = sn.build_snapshot(store, toy_view(), TimeRange.of("2024-01-01", "2024-01-05"))
    assert wider.snapshot_id != first.snapshot_id and wider.row_count == 6


def test_registry_row_records_the_definition(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    assert len(store.execute(f"select * from {sn.REGISTRY}")) == 1
    stored = sn.get_snapshot(store, info.snapshot_id)
    assert stored.time_range == WINDOW and stored.spine_model == "label_toy" and stored.spine_time == "prediction_at"
    query = store.scalar(f"select query_sql from {sn.REGISTRY}")
    assert "ASOF" in query.upper()


def test_explicit_time_splits_are_ordered_and_disjoint(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    splits = load_splits(store, info, TimeSplit(validation_start="2024-01-02", test_start="2024-01-03"))
    ids = {name: splits.__getattribute__(name)["flight_id"].to_pylist() for name in SPLIT_NAMES}
    assert ids == {"train": ["f1", "f2"], "validation": ["f3", "f4"], "test": ["f5"]}
    times = {name: getattr(splits, name)["prediction_at"].to_pylist() for name in SPLIT_NAMES}
    assert max(times["train"]) < splits.validation_start <= min(times["validation"])
    assert max(times["validation"]) < splits.test_start <= min(times["test"])


def test_fraction_splits_keep_equal_times_together(store):
    info = sn.build_snapshot(store, toy_view(), WINDOW)
    splits = load_splits(store, info, TimeSplit(fractions=(0.2, 0.4, 0.4)))
    ids = [getattr(splits, name)["flight_id"].to_pylist() for name in SPLIT_NAMES]
    assert ids == [["f1"], ["f2"], ["f3", "f4", "f5"]]  # f3 and f4 share a time: same split
    assert sum(map(len, ids)) == info.row_count and len({i for part in ids for i in part}) == info.row_count
    with pytest.raises(ValueError, match="empty"):
        load_splits(store, info, TimeSplit(fractions=(0.4, 0.2, 0.4)))  # both cuts land on the tie


def test_naive_times_and_bad_splits_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        TimeRange(dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="empty time range"):
        TimeRange.of("2024-01-02", "2024-01-01")
    with pytest.raises(ValueError):
        TimeSplit(validation_start="2024-01-03", test_start="2024-01-02")
    with pytest.raises(ValueError):
        TimeSplit(fractions=(0.5, 0.5, 0.5))


def test_an_entity_key_may_be_the_spine_time_itself(store):
    """Churn's label is one row per customer and month start: its keys are (customer_id, prediction_at)."""
    view = toy_view()
    keyed = dataclasses.replace(view, label=dataclasses.replace(view.label, entity=("flight_id", "prediction_at")))
    info = sn.build_snapshot(store, keyed, WINDOW)
    assert store.to_arrow(info.table(store)).column_names.count("prediction_at") == 1
    assert info.row_count == 5
    splits = load_splits(store, info, TimeSplit(validation_start="2024-01-02", test_start="2024-01-03"))
    assert splits.train["flight_id"].to_pylist() == ["f1", "f2"]
