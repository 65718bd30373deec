"""Serving uses the stream: with the consumer running, a transaction scored one second after the card's
previous one (published to the stream, never landed) sees that previous transaction in its features, through
the real HTTP service."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import httpx
import pytest
import redis
from fti_testing import FRAUD_CONFIG, SLICE_END, copy_home, query
from online_testing import ServerThread, train_champion

from models_ml.core.time import TimeRange
from models_ml.inference.online.materialize import refresh_online_store
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.store import RowsRequest, open_online_store
from models_ml.streaming.consumer import Consumer, ConsumerConfig
from models_ml.streaming.events import encode
from models_ml.training.splits import TimeSplit

pytestmark = pytest.mark.slow
MODEL = "card_fraud"


def test_a_request_one_second_after_a_streamed_transaction_sees_it(built_home, tmp_path, redis_url):
    settings = copy_home(built_home, tmp_path / "home")
    train_champion(settings, model_name=MODEL, time_range=TimeRange.of(FRAUD_CONFIG.start, SLICE_END),
                   split=TimeSplit("2012-12-04", "2012-12-05"))
    refresh_online_store(settings, "sqlite")
    card, merchant, category, lat, lon, last = query(settings, """
        select t.card_id, t.merchant_id, t.merchant_category, t.latitude, t.longitude, t.transaction_at
        from staging.stg_fraud__transactions t order by t.transaction_at desc limit 1""")[0]
    streamed_at = last + dt.timedelta(minutes=3)

    consumer = Consumer(settings, ConsumerConfig(redis_url, online_store="sqlite", block_ms=20))
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,))
    worker.start()
    client = redis.Redis.from_url(redis_url)
    try:
        client.xadd("fraud:events", encode("transaction", {
            "transaction_id": "streamed-1", "card_id": card, "merchant_id": merchant, "merchant_category": category,
            "amount": 20.0, "latitude": lat, "longitude": lon, "transaction_at": streamed_at}))
        deadline = time.monotonic() + 20
        with open_online_store(settings, "sqlite") as online:
            while True:
                row = online.read_rows([RowsRequest("fg_card__activity:v1", [card])])[0][0]
                if row is not None and row.event_at == streamed_at:
                    break
                assert time.monotonic() < deadline, "the streamed transaction never reached the online store"
                time.sleep(0.02)
        scored_at = streamed_at + dt.timedelta(seconds=1)
        request = {"transaction_id": "request-1", "card_id": card, "merchant_id": merchant,
                   "merchant_category": category, "amount": 25.0, "latitude": lat, "longitude": lon,
                   "transaction_at": scored_at.isoformat(),
                   "prediction_at": (scored_at - dt.timedelta(microseconds=1)).isoformat()}
        with ServerThread(create_app(settings, models=[MODEL], poll_seconds=0.2)) as running:
            response = httpx.post(f"{running.url}/predict/{MODEL}", json=request)
            assert response.status_code == 200, response.text
    finally:
        stop.set()
        worker.join()
        consumer.close()
        client.close()
    expected_10m = query(settings, "select count(*) from staging.stg_fraud__transactions where card_id = ? "
                                   "and transaction_at > ?", [card, streamed_at - dt.timedelta(minutes=10)])[0][0] + 1
    log = read_prediction_log(settings.prediction_log_path).to_pylist()
    features = [json.loads(r["features"]) for r in log if json.loads(r["entity"])["transaction_id"] == "request-1"][0]
    assert features["seconds_since_previous"] == pytest.approx(1.0)
    assert features["card_transaction_count_10m"] == expected_10m
    assert features["card_last_amount"] == 20.0
