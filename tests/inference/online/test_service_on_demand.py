"""The service serves a model whose feature view has on-demand features: card_fraud, for real (uvicorn on a
loopback port, hit over HTTP), its champion loaded from the published pointer.

The other service tests serve flight_delay, which has none, so nothing else would notice a service that
cannot load such a model, or one that sends the model NaN where an on-demand feature belongs. Here a
request's on-demand features must come out computed, equal to the offline point-in-time join's (with its
UDFs) for the same request, and its score must be the model's score of that offline row.

Requests are made up just after the fraud data ends, for known cards at known merchants, with the spine
time one microsecond before the transaction as the label defines it, so the latest stored rows are the
ones the offline join takes.
"""

from __future__ import annotations

import datetime as dt
import json

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fti_testing import FRAUD_CONFIG, SLICE_END, copy_home, query, same_value
from online_testing import ServerThread, train_champion

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import load_catalog
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.offline import retrieval
from models_ml.offline.store import opened
from models_ml.training.champion_pointer import read_pointer
from models_ml.training.splits import TimeSplit
from models_ml.training.train import load_model

pytestmark = pytest.mark.slow
MODEL = "card_fraud"
ON_DEMAND = ("distance_from_previous_km", "seconds_since_previous", "amount_to_card_mean_ratio")


@pytest.fixture(scope="module")
def fraud_home(served_home, tmp_path_factory):
    """The served home (its online store already holds the fraud groups) with a card_fraud champion,
    trained on the tiny fraud dataset's mature labels (27 November to 10 December) and published."""
    home = copy_home(served_home, tmp_path_factory.mktemp("fraud_served") / "home")
    train_champion(home, model_name=MODEL, time_range=TimeRange.of(FRAUD_CONFIG.start, SLICE_END),
                   split=TimeSplit("2012-12-04", "2012-12-05"))
    return home


def fraud_requests(home, n: int = 12) -> list[dict]:
    """Transactions of known cards at known merchants, just after the data ends (JSON-ready)."""
    cards = [r[0] for r in query(home, "select card_id from staging.stg_fraud__cards order by card_id")]
    merchants = query(home, "select merchant_id, merchant_category, latitude, longitude "
                            "from staging.stg_fraud__merchants order by merchant_id")
    rng = np.random.default_rng(7)
    start = FRAUD_CONFIG.end_at + dt.timedelta(minutes=1)
    requests = []
    for i in range(n):
        merchant_id, category, latitude, longitude = merchants[int(rng.integers(len(merchants)))]
        at = start + dt.timedelta(seconds=float(rng.uniform(0, 3600)))
        requests.append({
            "transaction_id": f"request_{i}", "card_id": cards[int(rng.integers(len(cards)))],
            "merchant_id": merchant_id, "merchant_category": category,
            "amount": round(float(rng.lognormal(3.5, 1.0)), 2),
            "latitude": latitude + float(rng.normal(0, 1)), "longitude": longitude + float(rng.normal(0, 1)),
            "transaction_at": at.isoformat(), "prediction_at": (at - dt.timedelta(microseconds=1)).isoformat(),
        })
    return requests


def offline_rows(home, requests: list[dict]) -> dict[str, dict]:
    """The offline point-in-time join (on-demand UDFs included) of the requests, by transaction id."""
    view = load_catalog(home).view(MODEL)
    timestamps = {c: pa.array([dt.datetime.fromisoformat(r[c]) for r in requests], pa.timestamp("us", tz="UTC"))
                  for c in ("transaction_at", "prediction_at")}
    spine = pa.table({**{c: [r[c] for r in requests] for c in requests[0] if c not in timestamps}, **timestamps})
    with opened(home) as warehouse:
        requested = warehouse.ibis.create_table("served_requests", spine, temp=True)
        table = warehouse.to_arrow(retrieval.join_features(warehouse, view, requested))
    return {row["transaction_id"]: row for row in table.to_pylist()}


def test_the_service_scores_card_fraud_with_its_on_demand_features(fraud_home):
    pointer = read_pointer(fraud_home, MODEL)
    model = load_model(pointer.model_dir)
    assert set(ON_DEMAND) <= set(model.spec.features)  # the model reads them: its score depends on them
    requests = fraud_requests(fraud_home)
    with ServerThread(create_app(fraud_home, models=[MODEL], poll_seconds=0.2)) as running:
        health = httpx.get(f"{running.url}/health/details").json()
        assert health["load_errors"] == {} and health["models"][MODEL]["version"] == pointer.version
        single = httpx.post(f"{running.url}/predict/{MODEL}", json=requests[0])
        assert single.status_code == 200, single.text
        batch = httpx.post(f"{running.url}/predict/{MODEL}/batch", json=requests[1:])
        assert batch.status_code == 200, batch.text
    served = [single.json(), *batch.json()["predictions"]]
    assert all(not p["missing_groups"] for p in served)

    # The model's input rows as the service built them (the prediction log, flushed on shutdown).
    log = read_prediction_log(fraud_home.prediction_log_path).to_pylist()
    logged = {json.loads(row["entity"])["transaction_id"]: json.loads(row["features"]) for row in log
              if row["model_name"] == MODEL}
    offline = offline_rows(fraud_home, requests)
    for request in requests:
        row, expected = logged[request["transaction_id"]], offline[request["transaction_id"]]
        computed = [name for name in ON_DEMAND if row[name] is not None and not np.isnan(row[name])]
        assert computed == list(ON_DEMAND), (request["transaction_id"], row)
        assert [name for name in model.spec.features if not same_value(row[name], expected[name])] == []
    table = pa.Table.from_pylist([offline[r["transaction_id"]] for r in requests])
    np.testing.assert_allclose([p["score"] for p in served], model.predict(table), rtol=0, atol=1e-12)
