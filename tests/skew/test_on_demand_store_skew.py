"""Skew test through the real online store: the embedded store, materialized from the warehouse, looked up and
laid out into model rows the way the service does (`OnlineStore.lookup`, then `on_demand.feature_rows`), gives
exactly the offline point-in-time join (with its on-demand UDFs) for the same new requests.

New requests arrive just after the data in the warehouse ends, so the latest stored row of each entity is
the one the offline join at (request time - 1 microsecond) takes. The requests are made up (known and unknown
cards and merchants, places near and far), as a client would send them, with the time as an ISO string.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
from fti_testing import FRAUD_CONFIG, copy_home, query, same_value

from models_ml.definitions.catalog import load_catalog
from models_ml.inference.online.materialize import materialize
from models_ml.inference.online.on_demand import feature_rows
from models_ml.inference.online.store import open_online_store
from models_ml.offline import retrieval
from models_ml.offline.store import opened

UTC = dt.timezone.utc


def _requests(home, n: int = 300) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    cards = [r[0] for r in query(home, "select card_id from staging.stg_fraud__cards order by card_id")]
    merchants = query(home, "select merchant_id, merchant_category, latitude, longitude "
                            "from staging.stg_fraud__merchants order by merchant_id")
    start = FRAUD_CONFIG.end_at + dt.timedelta(minutes=1)
    requests = []
    for i in range(n):
        merchant = merchants[int(rng.integers(len(merchants)))]
        card = cards[int(rng.integers(len(cards)))] if i % 25 else "card_unknown"
        merchant_id = merchant[0] if i % 40 else "merchant_unknown"
        at = start + dt.timedelta(seconds=float(rng.uniform(0, 3600)))
        requests.append({
            "transaction_id": f"request_{i}", "card_id": card, "merchant_id": merchant_id,
            "merchant_category": merchant[1], "amount": round(float(rng.lognormal(3.5, 1.0)), 2),
            "latitude": merchant[2] + float(rng.normal(0, 2)), "longitude": merchant[3] + float(rng.normal(0, 2)),
            "transaction_at": at.isoformat(),
        })
    return requests


def test_the_online_store_path_gives_the_offline_feature_vector_exactly(built_home, tmp_path):
    home = copy_home(built_home, tmp_path / "home")
    view = load_catalog(home).view("card_fraud")
    requests = _requests(home)

    as_of = [dt.datetime.fromisoformat(r["transaction_at"]) for r in requests]
    with open_online_store(home, "sqlite") as store:
        materialize(home, store)
        found = store.lookup(view, requests, as_of)
    online = feature_rows(view, requests, found.features)

    with opened(home) as warehouse:
        spine = pa.table({
            **{c: [r[c] for r in requests] for c in ["transaction_id", "card_id", "merchant_id", "merchant_category",
                                                     "amount", "latitude", "longitude"]},
            "transaction_at": pa.array(as_of, pa.timestamp("us", tz="UTC")),
            "prediction_at": pa.array([t - dt.timedelta(microseconds=1) for t in as_of], pa.timestamp("us", tz="UTC")),
        })
        requested = warehouse.ibis.create_table("skew_requests", spine, temp=True)
        offline = warehouse.to_arrow(retrieval.join_features(warehouse, view, requested))
    offline_rows = {row["transaction_id"]: row for row in offline.to_pylist()}

    mismatches = [(r["transaction_id"], name, vector[name], offline_rows[r["transaction_id"]][name])
                  for r, vector in zip(requests, online) for name in view.feature_columns
                  if not same_value(vector[name], offline_rows[r["transaction_id"]][name])]
    assert mismatches == []
    known = [v for r, v in zip(requests, online) if r["card_id"] != "card_unknown"]
    assert sum(v["seconds_since_previous"] is not None for v in known) > 0.9 * len(known)
    assert all(v["seconds_since_previous"] is None for r, v in zip(requests, online) if r["card_id"] == "card_unknown")
