"""The streaming updater's rules without a stream: out-of-order events are recomputed into their windows (as
the batch path's incremental run does), a transaction id is counted once, an event older than the retention
horizon is split off as late."""

from __future__ import annotations

import datetime as dt

import pytest

from models_ml.core.settings import load_settings
from models_ml.streaming.definition import compile_models
from models_ml.streaming.events import decode_batch, encode
from models_ml.streaming.updater import CARD, MODELS, Updater

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return compile_models(load_settings(tmp_path_factory.mktemp("compile") / "home"), MODELS)


def _tx(transaction_id: str, minutes: float, amount: float = 1.0, card: str = "c1") -> tuple[str, dict]:
    row = {"transaction_id": transaction_id, "card_id": card, "merchant_id": "m1", "merchant_category": "grocery",
           "amount": amount, "latitude": 40.0, "longitude": -74.0,
           "transaction_at": T0 + dt.timedelta(minutes=minutes)}
    return f"{transaction_id}-0", encode("transaction", row)


def _step(updater: Updater, *entries):
    decoded = decode_batch(list(entries))
    late = updater.split_late(decoded)
    updater.absorb(decoded)
    card = updater.recompute(decoded)[CARD].to_pylist()
    return late, {r["card_id"]: r for r in card}


def test_out_of_order_duplicate_and_late_events(models):
    updater = Updater(models, lambda: dt.datetime.now(UTC))
    try:
        _, rows = _step(updater, _tx("t1", 0, 1.25), _tx("t2", 5, 2.5))
        assert (rows["c1"]["event_at"], rows["c1"]["transaction_count_10m"]) == (T0 + dt.timedelta(minutes=5), 2)

        _, rows = _step(updater, _tx("t0", 2, 4.0))  # out of order: before t2, still in its window
        assert (rows["c1"]["event_at"], rows["c1"]["transaction_count_10m"]) == (T0 + dt.timedelta(minutes=5), 3)
        assert rows["c1"]["amount_sum_10m"] == 7.75
        assert rows["c1"]["last_amount"] == 2.5  # the latest row is still t2's

        _, rows = _step(updater, _tx("t2", 5, 2.5))  # redelivered: counted once
        assert rows["c1"]["transaction_count_10m"] == 3

        _step(updater, _tx("t9", 90 * 24 * 60, card="c2"))  # 90 days later: the horizon moves past t0..t2
        late, rows = _step(updater, _tx("t3", 1))
        assert [(r["transaction_id"], r["_entry_id"]) for r in late["transaction"]] == [("t3", "t3-0")]
        assert rows == {}
    finally:
        updater.close()
