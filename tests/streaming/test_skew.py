"""Skew: events replayed through the stream leave the online store equal, value for value, to the latest row
per entity of the dbt tables built from the same events (handed off to the batch path)."""

from __future__ import annotations

import redis
from streaming_testing import build_batch, max_difference, replay_events

from examples.fraud.producer import publish
from models_ml.core.settings import load_settings
from models_ml.streaming.consumer import Consumer, ConsumerConfig


def test_stream_and_batch_agree_value_for_value(tmp_path, redis_url):
    settings = load_settings(tmp_path / "home")
    client = redis.Redis.from_url(redis_url)
    events = replay_events(settings, days=6)
    assert any(kind == "chargeback" for _, kind, _ in events)
    publish(client, "fraud:events", events[: len(events) // 2])
    client.xadd("fraud:events", {"kind": "refund", "amount": "1"})  # malformed: dead-lettered, pipeline goes on
    publish(client, "fraud:events", events[len(events) // 2:])

    consumer = Consumer(settings, ConsumerConfig(redis_url, count=200, online_store="sqlite"))
    try:
        metrics = consumer.run(idle_exit_s=0.3)
    finally:
        consumer.close()
    assert metrics.events == len(events) + 1
    dead = client.xrange("fraud:events:dead")
    assert [(f[b"reason"], f[b"detail"]) for _, f in dead if f[b"reason"] == b"malformed"] == [
        (b"malformed", b"unknown kind 'refund': expected one of transaction, chargeback")]
    assert int(client.hget("fraud:events:metrics", "dead_letters:malformed")) == 1
    assert client.xpending("fraud:events", "features")["pending"] == 0

    build_batch(settings)
    worst, compared, mismatches = max_difference(settings)
    print(f"skew: {compared} entities compared, max abs difference {worst}")
    assert compared > 100
    assert mismatches == []
    assert worst <= 1e-12
    client.close()
