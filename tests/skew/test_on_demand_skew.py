"""Skew test: for the same transactions, the online path computes exactly the offline snapshot's features.

Offline: the training snapshot of `card_fraud` (point-in-time join at the transaction time minus one
microsecond, then the on-demand features, the fraud example's functions in examples/fraud/on_demand.py, as
DuckDB vectorised UDFs over Arrow chunks).
Online: what the serving app does per request, emulated without a store server: for each feature group, the
latest stored row of the entity strictly before the transaction (a plain keyed query, as an online store
refreshed up to then would hold), then `online_on_demand.feature_rows` (request features + stored features +
`compute_many` on one-row arrays). Requests carry JSON-like values (the time as an ISO string).

The vectors must be identical, value for value (floats bit for bit; NULL offline = None online).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc
import pytest
from fti_testing import FRAUD_CONFIG, SLICE_END, same_value

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import FeatureGroup, load_catalog
from models_ml.inference.online import on_demand as online_on_demand
from models_ml.inference.online.store import online_lookups
from models_ml.offline.store import OfflineStore, opened
from models_ml.training import snapshot as sn


def _latest_before(store: OfflineStore, group: FeatureGroup, keys: dict[str, Any], at: dt.datetime,
                   columns: tuple[str, ...]) -> dict[str, Any] | None:
    """The group's latest row for the entity with event time strictly before `at` (ties: latest loaded)."""
    where = " and ".join(f"{column} = ?" for column in keys)
    order = f"{group.event_time} desc" + (f", {group.created_time} desc nulls last" if group.created_time else "")
    rows = store.query(
        f"select {', '.join(columns)} from {group.qualified_relation} "
        f"where {where} and {group.event_time} < ? order by {order} limit 1",
        [*keys.values(), at],
    )
    return rows[0] if rows else None


@pytest.fixture(scope="module")
def offline(built_home, tmp_path_factory):
    """The card_fraud training snapshot over the whole tiny fraud dataset, in a private copy of the home."""
    from fti_testing import copy_home

    home = copy_home(built_home, tmp_path_factory.mktemp("skew") / "home")
    view = load_catalog(home).view("card_fraud")
    with opened(home) as store:
        info = sn.build_snapshot(store, view, TimeRange.of(FRAUD_CONFIG.start, SLICE_END))
        yield view, store, store.to_arrow(info.table(store))


def _sample(table, every: int = 9) -> list[dict[str, Any]]:
    """Every fraud, every card's first transaction (no previous one: NULLs), bursts seconds apart, and a
    regular sample of the rest."""
    seconds = table["seconds_since_previous"]
    keep = pc.or_(pc.or_(table["is_fraud"], pc.is_null(seconds)), pc.less(pc.fill_null(seconds, 1e9), 600))
    index = pc.indices_nonzero(keep).to_pylist()
    index = sorted(set(index) | set(range(0, table.num_rows, every)))
    return table.take(index).to_pylist()


def test_online_path_gives_the_offline_feature_vector_exactly(offline):
    view, store, table = offline
    assert {f.module for f in view.on_demand} == {"examples.fraud.on_demand"}  # the example's, not the core's
    rows = _sample(table)
    assert len(rows) > 500
    assert sum(r["is_fraud"] for r in rows) >= 20
    assert sum(r["seconds_since_previous"] is None for r in rows) >= 50  # first transactions of cards

    lookups = online_lookups(view)
    mismatches = []
    for row in rows:
        request = {column: row[column] for column in ["transaction_id", "card_id", "merchant_id", *view.request_columns]}
        request["transaction_at"] = row["transaction_at"].isoformat()  # as a JSON request carries it
        stored: dict[str, Any] = {}
        for lookup in lookups:
            keys = {group_column: request[spine] for spine, group_column in lookup.keys.items()}
            found = _latest_before(store, lookup.group, keys, row["transaction_at"], lookup.columns)
            stored.update({output: None if found is None else found[column]
                           for column, output in lookup.output_names.items()})
        online = online_on_demand.feature_rows(view, [request], [stored])[0]
        assert list(online) == view.feature_columns
        for name in view.feature_columns:
            if not same_value(online[name], row[name]):
                mismatches.append((row["transaction_id"], name, online[name], row[name]))
    assert mismatches == []


def test_the_features_of_a_transaction_come_only_from_transactions_strictly_before_it(offline):
    _, _, table = offline
    earlier = pc.less(table["card_last_transaction_at"], table["transaction_at"])
    assert pc.all(pc.fill_null(earlier, True)).as_py()
    # and the previous transaction is the card's latest one before: no transaction of the card in between
    rows = table.select(["card_id", "transaction_at", "card_last_transaction_at"]).to_pylist()
    by_card: dict[str, list[dt.datetime]] = {}
    for r in sorted(rows, key=lambda r: r["transaction_at"]):
        by_card.setdefault(r["card_id"], []).append(r["transaction_at"])
    for r in rows[:2000]:
        times = by_card[r["card_id"]]
        before = [t for t in times if t < r["transaction_at"]]
        if before and r["card_last_transaction_at"] is not None:
            assert r["card_last_transaction_at"] >= max(before)
