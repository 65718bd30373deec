"""Publishes the generated card transactions and chargebacks to a Redis stream, one entry per event, in event
time order (a transaction at its transaction time, a chargeback at its report time), as a payment switch
would: replayed at ``speedup`` times real time, or at a fixed ``rate`` of events per second, or as fast as
Redis takes them. The generator's ground truth never goes on the stream (as in the loader)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from examples.fraud.generator import FraudConfig
from examples.fraud.loader import GROUND_TRUTH, _between, dataset_files
from models_ml.streaming.events import encode


def events_between(config: FraudConfig, cache_dir: Path, start: dt.datetime, stop: dt.datetime) -> list[tuple]:
    """(event time, kind, row) of every transaction and chargeback with start <= time < stop, in time order."""
    files = dataset_files(config, cache_dir)
    transactions = _between(files["transactions"], "transaction_at", start, stop, GROUND_TRUTH)
    chargebacks = _between(files["chargebacks"], "reported_at", start, stop)
    events = [(r["transaction_at"], "transaction", r) for r in transactions.to_pylist()]
    events += [(r["reported_at"], "chargeback", r) for r in chargebacks.to_pylist()]
    events.sort(key=lambda e: (e[0], e[1] != "transaction"))
    return events


def publish(client, stream: str, events: list[tuple], *, speedup: float | None = None, rate: float | None = None,
            chunk: int = 200, maxlen: int | None = None) -> int:
    """XADD every event (pipelined in chunks); pace by event time / ``speedup`` or by ``rate`` per second."""
    started, first = time.monotonic(), events[0][0] if events else None
    for i in range(0, len(events), chunk):
        part = events[i:i + chunk]
        if speedup:
            due = (part[0][0] - first).total_seconds() / speedup
        elif rate:
            due = i / rate
        else:
            due = 0.0
        wait = due - (time.monotonic() - started)
        if wait > 0:
            time.sleep(wait)
        pipe = client.pipeline(transaction=False)
        for _, kind, row in part:
            pipe.xadd(stream, encode(kind, row), maxlen=maxlen, approximate=True)
        pipe.execute()
    return len(events)


def main(argv: list[str] | None = None) -> int:
    import argparse

    import redis

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--stream", default="fraud:events")
    parser.add_argument("--start", required=True, help="ISO date/time (UTC), first event time")
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--speedup", type=float, default=None, help="event time runs this many times real time")
    parser.add_argument("--rate", type=float, default=None, help="events per second instead of --speedup")
    parser.add_argument("--cache-dir", type=Path, default=Path(".fti/cache"))
    args = parser.parse_args(argv)
    start = dt.datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    events = events_between(FraudConfig(), args.cache_dir, start, start + dt.timedelta(days=args.days))
    print(f"published {publish(redis.Redis.from_url(args.redis_url), args.stream, events, speedup=args.speedup, rate=args.rate)} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
