"""Exactly once: a consumer killed with SIGKILL mid-stream and restarted loses no event and counts none
twice, checked against the dbt tables built from the handed-off events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from streaming_testing import build_batch, max_difference, replay_events

from examples.fraud.producer import publish
from models_ml.core.settings import load_settings
from models_ml.offline.store import opened

ROOT = Path(__file__).resolve().parents[2]


def _consumer(settings, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "models_ml.streaming.consumer", "--redis-url", url, "--home", str(settings.home),
         "--count", "40", "--online-store", "sqlite", *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

# How long the consumer may take before the test calls it hung: its start (dbt compile, history read) takes
# seconds on a quiet machine and over a minute on a busy one; a guard against hanging, not a time limit.
HANG_SECONDS = 300


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(tmp_path, redis_url):
    settings = load_settings(tmp_path / "home")
    client = redis.Redis.from_url(redis_url)
    events = replay_events(settings, days=6)
    publish(client, "fraud:events", events)

    first = _consumer(settings, redis_url)
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while int(client.hget("fraud:events:metrics", "events") or 0) < len(events) // 3:
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the consumer made no progress"
            time.sleep(0.05)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    done_before = int(client.hget("fraud:events:metrics", "events"))
    assert done_before < len(events)

    second = _consumer(settings, redis_url, "--idle-exit", "0.5")
    assert second.wait(timeout=HANG_SECONDS) == 0, second.stderr.read().decode()
    assert client.xpending("fraud:events", "features")["pending"] == 0

    build_batch(settings)
    with opened(settings, read_only=True) as warehouse:
        landed = warehouse.execute("select count(*), count(distinct transaction_id) from raw.fraud_transactions")[0]
    published = [row["transaction_id"] for _, kind, row in events if kind == "transaction"]
    assert landed == (len(published), len(set(published)))  # none lost, none landed twice (the generator re-sends some)
    worst, compared, mismatches = max_difference(settings)
    print(f"kill -9 after {done_before} of {len(events)} events: {compared} entities, max abs difference {worst}")
    assert mismatches == [] and worst <= 1e-12
    client.close()
