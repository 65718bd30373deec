"""A consumer started on a home with batch history counts that history: a transaction one second after the
card's previous one (the last one the batch path holds) sees it in its 10-minute window, and the 30-day
counts include the warehouse's transactions."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
from fti_testing import copy_home, query

from models_ml.inference.online.store import RowsRequest, open_online_store
from models_ml.streaming.consumer import Consumer, ConsumerConfig
from models_ml.streaming.events import encode

pytestmark = pytest.mark.slow


def test_a_consumer_on_a_built_home_counts_its_history(built_home, tmp_path, redis_url):
    settings = copy_home(built_home, tmp_path / "home")
    card, merchant, previous = query(settings, "select card_id, merchant_id, transaction_at "
                                               "from staging.stg_fraud__transactions order by transaction_at desc limit 1")[0]
    at = previous + dt.timedelta(seconds=1)
    expected = {
        window: query(settings, "select count(*) from staging.stg_fraud__transactions "
                                "where card_id = ? and transaction_at > ?", [card, at - length])[0][0] + 1
        for window, length in (("10m", dt.timedelta(minutes=10)), ("30d", dt.timedelta(days=30)))
    }
    client = redis.Redis.from_url(redis_url)
    client.xadd("fraud:events", encode("transaction", {
        "transaction_id": "streamed-1", "card_id": card, "merchant_id": merchant, "merchant_category": "grocery",
        "amount": 12.5, "latitude": 40.0, "longitude": -74.0, "transaction_at": at}))
    consumer = Consumer(settings, ConsumerConfig(redis_url, online_store="sqlite"))
    try:
        consumer.run(idle_exit_s=0.3)
    finally:
        consumer.close()
    with open_online_store(settings, "sqlite") as online:
        row = online.read_rows([RowsRequest("fg_card__activity:v1", [card])])[0][0]
    assert row.event_at == at
    assert (row.values["transaction_count_10m"], row.values["transaction_count_30d"]) == (expected["10m"],
                                                                                         expected["30d"])
    assert expected["10m"] >= 2  # the previous transaction is in the window
    client.close()
