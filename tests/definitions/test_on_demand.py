"""On-demand features: the fraud example's functions, the input conversion both paths share, resolving
``module:function`` references, the catalog's checks, the online entry points, and the offline hook on a
hand-made table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import textwrap

import ibis
import numpy as np
import pyarrow as pa
import pytest

from examples.fraud import on_demand as fraud
from models_ml.core.time import TimeRange
from models_ml.definitions import on_demand
from models_ml.definitions.catalog import (
    CatalogError,
    catalog_from_manifest,
    load_catalog,
)
from models_ml.inference.online import on_demand as online_on_demand
from models_ml.inference.online.store import online_lookups
from models_ml.offline import on_demand as offline_on_demand
from models_ml.training import snapshot as sn

UTC = dt.timezone.utc
FRAUD = "examples.fraud.on_demand"


def test_haversine_is_right_on_known_distances():
    # New York -> Los Angeles is about 3,936 km; a point to itself is 0; a quarter meridian is pi/2 * R.
    d = fraud.haversine_km(np.array([40.7128, 10.0, 0.0]), np.array([-74.0060, 20.0, 0.0]),
                               np.array([34.0522, 10.0, 90.0]), np.array([-118.2437, 20.0, 0.0]))
    assert d[0] == pytest.approx(3936, abs=5)
    assert d[1] == 0.0
    assert d[2] == pytest.approx(math.pi / 2 * fraud.EARTH_RADIUS_KM)


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
    batch = on_demand.compute(f"{FRAUD}:speed_kmh", {
        k: pa.array(v.astype(np.int64), timestamps) if k in ("at", "since") else pa.array(v) for k, v in columns.items()
    })
    for i in range(0, n, 97):
        one = on_demand.compute(f"{FRAUD}:speed_kmh", {k: [v[i]] for k, v in columns.items()})
        assert one[0].hex() == batch[i].hex()


def test_missing_or_undefined_results_are_missing():
    assert math.isnan(on_demand.compute(f"{FRAUD}:ratio", {"numerator": [5.0], "denominator": [0.0]})[0])
    assert math.isnan(on_demand.compute(f"{FRAUD}:ratio", {"numerator": [None], "denominator": [2.0]})[0])
    assert on_demand.compute(f"{FRAUD}:seconds_between", {"at": ["2024-01-01T00:01:00+00:00"],
                                                         "since": ["2024-01-01T00:00:00.5+00:00"]})[0] == 59.5


def test_a_reference_resolves_to_the_declared_function_once():
    speed = on_demand.resolve(f"{FRAUD}:speed_kmh")
    assert speed.compute is fraud.speed_kmh and speed.name == "speed_kmh" and speed.module == FRAUD
    assert speed.reference == f"{FRAUD}:speed_kmh"
    assert speed.parameters == {"latitude": "float", "longitude": "float", "at": "timestamp",
                                "other_latitude": "float", "other_longitude": "float", "since": "timestamp"}
    assert on_demand.resolve(f"{FRAUD}:speed_kmh") is speed and on_demand.FUNCTIONS[speed.reference] is speed
    assert on_demand.declaration(fraud.ratio).parameters == {"numerator": "float", "denominator": "float"}
    assert on_demand.declaration(math.sqrt) is None


def test_a_module_that_fails_to_import_is_named_with_its_cause(tmp_path, monkeypatch):
    (tmp_path / "broken_rules.py").write_text("import no_such_dependency_of_broken_rules\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(on_demand.OnDemandError) as raised:
        on_demand.resolve("broken_rules:anything")
    assert str(raised.value) == ("function 'broken_rules:anything': importing module 'broken_rules' failed (No module "
                                 "named 'no_such_dependency_of_broken_rules'); install what it imports")


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


RATIO = f"{FRAUD}:ratio"


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "x", "function": RATIO, "inputs": {"numerator": "amount"}}], "must bind exactly the parameters"),
    ([{"name": "x", "function": RATIO, "inputs": {"numerator": "amount", "denominator": "card_nothing"}}],
     "neither a joined feature column nor a column of label model"),
    ([{"name": "amount", "function": RATIO, "inputs": {"numerator": "amount", "denominator": "amount"}}],
     "clash"),
    ([{"name": "x", "function": RATIO, "inputs": {"numerator": "amount", "denominator": "amount"}, "kind": "float"}],
     r"unknown key meta\.fti\.on_demand\[0\]\.kind; known: name, function, inputs"),
    ([{"name": "x", "inputs": {}}], r"on_demand\[0\] needs a name and a function \(module:function\)"),
])
def test_bad_on_demand_declarations_are_named(manifest, entries, message):
    with pytest.raises(CatalogError, match=message):
        catalog_from_manifest(_with_on_demand(manifest, entries))


@pytest.mark.parametrize(("function", "message"), [
    ("ratio", "function 'ratio' is not a module:function reference: write it as module:function, "
              "e.g. examples.fraud.on_demand:speed_kmh"),
    ("examples.fraud.nope:ratio", "function 'examples.fraud.nope:ratio': no module 'examples.fraud.nope'; fix the "
                                  "module path, or install the package that holds it"),
    (f"{FRAUD}:rate", f"function '{FRAUD}:rate': module {FRAUD} has no 'rate' (its on-demand functions: "
                      "haversine_km, ratio, seconds_between, speed_kmh); fix the name"),
    ("examples.fraud.generator:haversine_km", "function 'examples.fraud.generator:haversine_km' is not an on-demand "
                                              "function: decorate it with @on_demand_function(<parameter>='float' or "
                                              "'timestamp', ...) from models_ml.definitions.on_demand"),
])
def test_an_unusable_function_fails_the_catalog_in_one_line_naming_view_feature_and_fix(manifest, function, message):
    entries = [{"name": "amount_ratio", "function": function,
                "inputs": {"numerator": "amount", "denominator": "amount"}}]
    with pytest.raises(CatalogError) as raised:
        catalog_from_manifest(_with_on_demand(manifest, entries))
    assert str(raised.value) == f"feature view card_fraud: on-demand feature 'amount_ratio': {message}"


def test_a_view_may_name_a_function_of_any_importable_module(manifest, tmp_path, monkeypatch):
    (tmp_path / "house_rules.py").write_text(textwrap.dedent('''
        import numpy as np

        from models_ml.definitions.on_demand import on_demand_function


        @on_demand_function(amount="float")
        def cents(amount: np.ndarray) -> np.ndarray:
            """The amount in cents."""
            return amount * 100.0
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    catalog = catalog_from_manifest(_with_on_demand(manifest, [
        {"name": "amount_cents", "function": "house_rules:cents", "inputs": {"amount": "amount"}},
    ]))
    feature = catalog.view("card_fraud").on_demand[0]
    assert (feature.function, feature.module, feature.reference) == ("cents", "house_rules", "house_rules:cents")
    assert on_demand.compute(feature.reference, {"amount": [1.25, None]}).tolist()[0] == 125.0
    assert on_demand.resolve("house_rules:cents").description == "The amount in cents."


def test_the_view_records_the_function_name_and_its_module_apart(view):
    speed = next(f for f in view.on_demand if f.name == "speed_from_previous_kmh")
    # the name alone is what a snapshot's definition hashes, as before functions moved out of the core
    assert (speed.function, speed.module) == ("speed_kmh", FRAUD)
    assert speed.reference == f"{FRAUD}:speed_kmh"
    recorded = sn.definition(view, TimeRange.of("2024-01-01", "2024-02-01"))["on_demand"]
    assert [f["function"] for f in recorded] == ["haversine_km", "seconds_between", "speed_kmh", "haversine_km",
                                                 "ratio"]


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
    values = compute_one(view, request, stored)
    assert values["seconds_since_previous"] == 600.0
    assert values["distance_from_previous_km"] == pytest.approx(3936, abs=5)
    assert values["speed_from_previous_kmh"] == pytest.approx(3936 * 6, rel=1e-3)
    assert values["distance_from_home_km"] == 0.0
    assert values["amount_to_card_mean_ratio"] == 3.0

    first_seen = compute_one(view, request, _stored(view))  # a card without history
    assert first_seen["seconds_since_previous"] is None and first_seen["amount_to_card_mean_ratio"] is None


def test_compute_online_names_what_is_missing(view):
    with pytest.raises(KeyError, match="transaction_at"):
        compute_one(view, {"amount": 1.0, "latitude": 1.0, "longitude": 1.0}, _stored(view))
    stored = _stored(view)
    del stored["card_last_latitude"]
    with pytest.raises(KeyError, match="card_last_latitude"):
        compute_one(view, {"amount": 1.0, "latitude": 1.0, "longitude": 1.0,
                                        "transaction_at": "2024-01-01T00:00:00+00:00"}, stored)


def test_online_lookups_name_every_group_key_and_column(view):
    lookups = {lookup.group.name: lookup for lookup in online_lookups(view)}
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


def compute_one(view, request, stored):
    """The on-demand features of one request, as the service computes them for a batch of one."""
    return online_on_demand.compute_many(view, [request], [stored])[0]
