"""On-demand features: the functions, the input conversion both paths share, the catalog's checks, the
online entry points, and the offline hook on a hand-made table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import ibis
import numpy as np
import pyarrow as pa
import pytest

from models_ml.definitions import on_demand
from models_ml.definitions.catalog import (
    CatalogError,
    catalog_from_manifest,
    load_catalog,
)
from models_ml.inference.online import on_demand as online_on_demand
from models_ml.offline import on_demand as offline_on_demand

UTC = dt.timezone.utc


def test_haversine_is_right_on_known_distances():
    # New York -> Los Angeles is about 3,936 km; a point to itself is 0; a quarter meridian is pi/2 * R.
    d = on_demand.haversine_km(np.array([40.7128, 10.0, 0.0]), np.array([-74.0060, 20.0, 0.0]),
                               np.array([34.0522, 10.0, 90.0]), np.array([-118.2437, 20.0, 0.0]))
    assert d[0] == pytest.approx(3936, abs=5)
    assert d[1] == 0.0
    assert d[2] == pytest.approx(math.pi / 2 * on_demand.EARTH_RADIUS_KM)


def test_timestamps_become_exact_microseconds_on_both_paths():
    at = dt.datetime(2024, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)
    micros = (at - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
    offline = on_demand.as_float64(pa.array([at, None], pa.timestamp("us", tz="UTC")), "timestamp")
    online = on_demand.as_float64([at.isoformat(), None], "timestamp")
    also = on_demand.as_float64([at.astimezone(dt.timezone(dt.timedelta(hours=-5))), np.datetime64(micros, "us")],
                                "timestamp")
    assert offline[0] == online[0] == also[0] == also[1] == float(micros)
    assert math.isnan(offline[1]) and math.isnan(online[1])
    with pytest.raises(ValueError, match="naive"):
        on_demand.as_float64([dt.datetime(2024, 1, 1)], "timestamp")


def test_one_row_gives_the_same_bits_as_the_same_row_inside_a_large_array():
    rng = np.random.default_rng(3)
    n = 10_000
    columns = {"latitude": rng.uniform(-60, 60, n), "longitude": rng.uniform(-180, 180, n),
               "other_latitude": rng.uniform(-60, 60, n), "other_longitude": rng.uniform(-180, 180, n),
               "at": rng.integers(1.7e15, 1.8e15, n).astype(float), "since": rng.integers(1.6e15, 1.7e15, n).astype(float)}
    timestamps = pa.timestamp("us", tz="UTC")
    batch = on_demand.compute("speed_kmh", {
        k: pa.array(v.astype(np.int64), timestamps) if k in ("at", "since") else pa.array(v) for k, v in columns.items()
    })
    for i in range(0, n, 97):
        one = on_demand.compute("speed_kmh", {k: [v[i]] for k, v in columns.items()})
        assert one[0].hex() == batch[i].hex()


def test_missing_or_undefined_results_are_missing():
    assert math.isnan(on_demand.compute("ratio", {"numerator": [5.0], "denominator": [0.0]})[0])
    assert math.isnan(on_demand.compute("ratio", {"numerator": [None], "denominator": [2.0]})[0])
    assert on_demand.compute("seconds_between", {"at": ["2024-01-01T00:01:00+00:00"],
                                                 "since": ["2024-01-01T00:00:00.5+00:00"]})[0] == 59.5


@pytest.fixture(scope="module")
def manifest(built_home) -> dict:
    load_catalog(built_home)
    return json.loads(built_home.manifest_path.read_text())


@pytest.fixture(scope="module")
def view(manifest):
    return catalog_from_manifest(manifest).view("card_fraud")


def test_the_catalog_reads_on_demand_features_and_their_inputs(view):
    names = [f.name for f in view.on_demand]
    assert names == ["distance_from_previous_km", "seconds_since_previous", "speed_from_previous_kmh",
                     "distance_from_home_km", "amount_to_card_mean_ratio"]
    assert view.feature_columns[-len(names):] == names
    # inputs that are not model features: joined, but not in feature_columns
    assert "card_last_transaction_at" in view.joined_columns
    assert "card_last_transaction_at" not in view.feature_columns
    assert "card_home_latitude" not in view.feature_columns
    assert view.on_demand_request_inputs == ["latitude", "longitude", "transaction_at", "amount"]
    assert view.request_columns == ["amount", "merchant_category", "latitude", "longitude", "transaction_at"]
    profile = next(ref for ref in view.features if ref.group.name == "fg_card__profile")
    assert profile.features == () and profile.columns == ("home_latitude", "home_longitude")


def _with_on_demand(manifest: dict, entries: list) -> dict:
    broken = json.loads(json.dumps(manifest))
    exposure = next(e for e in broken["exposures"].values() if e["name"] == "card_fraud")
    exposure["config"]["meta"]["fti"]["on_demand"] = entries
    return broken


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "x", "function": "nope", "inputs": {}}], "unknown function 'nope'"),
    ([{"name": "x", "function": "ratio", "inputs": {"numerator": "amount"}}], "must bind exactly the parameters"),
    ([{"name": "x", "function": "ratio", "inputs": {"numerator": "amount", "denominator": "card_nothing"}}],
     "neither a joined feature column nor a column of label model"),
    ([{"name": "amount", "function": "ratio", "inputs": {"numerator": "amount", "denominator": "amount"}}],
     "clash"),
])
def test_bad_on_demand_declarations_are_named(manifest, entries, message):
    with pytest.raises(CatalogError, match=message):
        catalog_from_manifest(_with_on_demand(manifest, entries))


def _stored(view, **values):
    stored = {name: None for name in view.joined_columns}
    stored.update(values)
    return stored


def test_compute_online_from_a_request_and_stored_values(view):
    request = {"amount": 120.0, "merchant_category": "electronics", "latitude": 40.7128, "longitude": -74.0060,
               "transaction_at": "2024-02-01T12:10:00+00:00"}
    stored = _stored(view, card_last_latitude=34.0522, card_last_longitude=-118.2437,
                     card_last_transaction_at=dt.datetime(2024, 2, 1, 12, 0, tzinfo=UTC),
                     card_home_latitude=40.7128, card_home_longitude=-74.0060, card_amount_mean_30d=40.0)
    values = online_on_demand.compute_online(view, request, stored)
    assert values["seconds_since_previous"] == 600.0
    assert values["distance_from_previous_km"] == pytest.approx(3936, abs=5)
    assert values["speed_from_previous_kmh"] == pytest.approx(3936 * 6, rel=1e-3)
    assert values["distance_from_home_km"] == 0.0
    assert values["amount_to_card_mean_ratio"] == 3.0

    first_seen = online_on_demand.compute_online(view, request, _stored(view))  # a card without history
    assert first_seen["seconds_since_previous"] is None and first_seen["amount_to_card_mean_ratio"] is None


def test_compute_online_names_what_is_missing(view):
    with pytest.raises(KeyError, match="transaction_at"):
        online_on_demand.compute_online(view, {"amount": 1.0, "latitude": 1.0, "longitude": 1.0}, _stored(view))
    stored = _stored(view)
    del stored["card_last_latitude"]
    with pytest.raises(KeyError, match="card_last_latitude"):
        online_on_demand.compute_online(view, {"amount": 1.0, "latitude": 1.0, "longitude": 1.0,
                                        "transaction_at": "2024-01-01T00:00:00+00:00"}, stored)


def test_online_lookups_name_every_group_key_and_column(view):
    lookups = {lookup.group.name: lookup for lookup in online_on_demand.online_lookups(view)}
    assert lookups["fg_card__activity"].keys == {"card_id": "card_id"}
    assert "last_transaction_at" in lookups["fg_card__activity"].columns
    assert lookups["fg_card__profile"].output_names == {"home_latitude": "card_home_latitude",
                                                        "home_longitude": "card_home_longitude"}
    assert lookups["fg_merchant__activity"].keys == {"merchant_id": "merchant_id"}
    assert all(lookup.group.online for lookup in lookups.values())


def test_add_on_demand_appends_the_features_in_the_engine(view):
    at = dt.datetime(2024, 2, 1, 12, 10, tzinfo=UTC)
    rows = {name: [None, None] for name in view.joined_columns}
    rows.update({"transaction_at": [at, at], "amount": [10.0, 10.0], "latitude": [1.0, 1.0], "longitude": [2.0, 2.0],
                 "card_last_transaction_at": [at - dt.timedelta(seconds=30), None], "card_last_latitude": [1.0, None],
                 "card_last_longitude": [2.0, None], "card_amount_mean_30d": [4.0, None]})
    schema = {name: "float64" for name in rows}
    schema.update({"transaction_at": "timestamp('UTC')", "card_last_transaction_at": "timestamp('UTC')"})
    table = ibis.memtable(pa.table(rows), schema=schema)
    result = offline_on_demand.add_on_demand(table, view).to_pyarrow().to_pylist()
    assert result[0]["seconds_since_previous"] == 30.0 and result[0]["distance_from_previous_km"] == 0.0
    assert result[0]["amount_to_card_mean_ratio"] == 2.5
    assert result[1]["seconds_since_previous"] is None and result[1]["distance_from_home_km"] is None
    assert offline_on_demand.add_on_demand(table, dataclasses.replace(view, on_demand=())) is table
