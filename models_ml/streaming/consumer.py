"""The long-running consumer: Redis stream -> micro-batches -> online store + hand-off files, then XACK.

Per micro-batch (one XREADGROUP): decode and validate (dead letters to ``<stream>:dead`` with the reason,
counted in ``<stream>:metrics``), stage into the retained history, recompute the touched entities' latest
rows by the dbt models' SQL, upsert them into the online store (its never-move-backwards rule), write the
hand-off files, and only then acknowledge. A crash anywhere before the XACK redelivers the same entries
(the consumer first re-reads its own pending entries, with the same COUNT, so a redelivered batch is the same
batch): the online upsert and the hand-off are idempotent, and the history skips ids it holds.

On start the history is rebuilt from the stream itself (entries up to the group's last delivered id), so
a restarted consumer, or one taking over a dead one's pending entries, computes what it would have.
Several consumers of one group are for taking over (XAUTOCLAIM of entries idle longer than ``claim_idle_ms``),
not for splitting one entity's events: a consumer must see all events of the entities it updates.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import load_catalog
from models_ml.inference.online.materialize import group_schema, to_refresh
from models_ml.inference.online.store import (
    GroupRefresh,
    OnlineStore,
    open_online_store,
)
from models_ml.offline.store import CREATED_AT, EVENT_AT
from models_ml.streaming.definition import CompiledModel, compile_models
from models_ml.streaming.events import ENTRY_ID, EVENT_TIME, decode_batch
from models_ml.streaming.handoff import handoff_dir, write_handoff
from models_ml.streaming.updater import CARD, MERCHANT, MODELS, STAGING, Updater

UTC = dt.timezone.utc


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class ConsumerConfig:
    redis_url: str
    stream: str = "fraud:events"
    group: str = "features"
    consumer: str = "consumer-1"
    count: int = 2_000  # entries per micro-batch at most
    block_ms: int = 100
    claim_idle_ms: int = 30_000
    online_store: str | None = None  # default: the settings' store
    latest_row: bool = True  # False: evaluate the models in full per micro-batch (the benchmark's baseline)


@dataclass
class Metrics:
    events: int = 0
    batches: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    freshness_ms: list[float] = field(default_factory=list)  # per entry: publish -> committed online
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per step of a micro-batch

    def timed(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - since
        return now


def _entries(reply) -> list[tuple[str, dict]]:
    out = []
    for _stream, entries in reply or []:
        out += [(i.decode() if isinstance(i, bytes) else i, f) for i, f in entries if f]
    return out


class Consumer:
    """One consumer process of the group (construct, then :meth:`run` until ``stop`` is set)."""

    def __init__(self, settings: Settings, config: ConsumerConfig, clock: Callable[[], dt.datetime] = utc_now,
                 models: dict[str, CompiledModel] | None = None, seed: bool = True):
        """``models``: the compiled models (:func:`compile_models` of :data:`MODELS`), compiled when None;
        ``seed``: start the history from the warehouse's staged rows when there is a warehouse."""
        import redis

        self.settings, self.config, self.clock = settings, config, clock
        self.redis = redis.Redis.from_url(config.redis_url)
        self.metrics = Metrics()
        catalog = load_catalog(settings)
        models = models or compile_models(settings, MODELS)
        self.groups = {name: catalog.group(name) for name in (CARD, MERCHANT)}
        self.updater = Updater(models, clock, latest_row=config.latest_row)
        self.store: OnlineStore = open_online_store(settings, config.online_store)
        self.directory = handoff_dir(settings)
        self._schemas: dict[str, object] = {}
        self._check_pending, self._next_claim = True, 0.0
        try:
            self.redis.xgroup_create(config.stream, config.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        if seed:
            self._seed(models)
        self._rebuild()

    def _seed(self, models: dict[str, CompiledModel]) -> None:
        """Start the history from the warehouse's staged rows of the last retention, when there is a
        warehouse: a consumer started after batch history exists counts it. Read-only, and closed at once."""
        from models_ml.offline.store import opened

        if not self.settings.warehouse_path.exists():
            return
        relations = {model: name for m in (CARD, MERCHANT) for name, model in models[m].inputs.items()}
        staged: dict[str, pa.Table] = {}
        with opened(self.settings, read_only=True) as warehouse:
            for staging, (kind, _) in STAGING.items():
                schema, name = (part.strip('"') for part in relations[staging].split(".")[-2:])
                if not warehouse.exists(schema, name):
                    continue
                table = warehouse.table(schema, name)
                column = table[EVENT_TIME[kind]]
                since = table.aggregate(latest=column.max()).to_pyarrow()["latest"][0].as_py()
                if since is None:
                    continue
                staged[staging] = warehouse.to_arrow(table.filter(column >= since - self.updater.retention))
        self.updater.seed(staged)

    def _rebuild(self) -> None:
        """Stage the entries already delivered to the group (the history a fresh process lacks)."""
        info = {g["name"].decode(): g for g in self.redis.xinfo_groups(self.config.stream)}
        last = info[self.config.group]["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else last
        if last in ("0-0", "0"):
            return
        start = "-"
        while True:
            entries = _entries([(None, self.redis.xrange(self.config.stream, start, last, count=10_000))])
            if not entries:
                return
            decoded = decode_batch(entries)
            self.updater.split_late(decoded)
            self.updater.absorb(decoded)
            if entries[-1][0] == last or len(entries) < 10_000:
                return
            start = "(" + entries[-1][0]

    def _read(self) -> list[tuple[str, dict]]:
        """Own pending entries first (after a restart: the batch that was in flight), then entries a dead
        consumer left pending (checked every ``claim_idle_ms``), then new ones."""
        config = self.config
        if self._check_pending:
            pending = _entries(self.redis.xreadgroup(config.group, config.consumer, {config.stream: "0"},
                                                     count=config.count))
            if pending:
                return pending
            self._check_pending = False  # from here on each batch is acknowledged before the next read
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + config.claim_idle_ms / 1000
            claimed = self.redis.xautoclaim(config.stream, config.group, config.consumer, config.claim_idle_ms,
                                            "0-0", count=config.count)
            if claimed and claimed[1]:
                self._check_pending = True  # claimed entries are now this consumer's pending ones
                return _entries([(None, claimed[1])])
        t0 = time.perf_counter()
        entries = _entries(self.redis.xreadgroup(config.group, config.consumer, {config.stream: ">"},
                                                 count=config.count, block=config.block_ms))
        if entries:
            self.metrics.timed("read", t0)
        return entries

    def process(self, entries: Sequence[tuple[str, dict]]) -> None:
        """One micro-batch, end to end (see the module docstring for the order)."""
        started = time.perf_counter()
        decoded = decode_batch(entries)
        late = self.updater.split_late(decoded)
        started = self.metrics.timed("decode", started)
        self.updater.absorb(decoded)
        started = self.metrics.timed("stage", started)
        latest = self.updater.recompute(decoded)
        started = self.metrics.timed("recompute", started)
        refreshes = [self._refresh(name, rows) for name, rows in latest.items() if rows.num_rows]
        if refreshes:
            self.store.apply(refreshes, self.clock())
        started = self.metrics.timed("online upsert", started)
        for kind in decoded.raw:
            write_handoff(self.directory, kind, entries[0][0], entries[-1][0], decoded.table(kind))
        started = self.metrics.timed("hand-off", started)
        dead = [*decoded.dead, *((r[ENTRY_ID], "late", {"kind": kind, "transaction_id": str(r["transaction_id"])})
                                 for kind, rows in late.items() for r in rows)]
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, reason, fields in dead:
            pipe.xadd(f"{self.config.stream}:dead", {**fields, "entry_id": entry_id, "reason": reason})
            pipe.hincrby(f"{self.config.stream}:metrics", f"dead_letters:{reason}", 1)
        pipe.hincrby(f"{self.config.stream}:metrics", "events", len(entries))
        pipe.xack(self.config.stream, self.config.group, *[i for i, _ in entries])
        pipe.execute()
        self.metrics.timed("dead letters + ack", started)
        now_ms = time.time() * 1000
        self.metrics.freshness_ms += [now_ms - int(i.split("-")[0]) for i, _ in entries]
        self.metrics.events += len(entries)
        self.metrics.batches += 1
        for _, reason, _ in dead:
            self.metrics.dead_letters[reason] = self.metrics.dead_letters.get(reason, 0) + 1

    def _refresh(self, name: str, rows: pa.Table) -> GroupRefresh:
        group = self.groups[name]
        if name not in self._schemas:
            self._schemas[name] = group_schema(group, rows.schema)
        schema = self._schemas[name]
        table = rows.append_column(EVENT_AT, rows[group.event_time]).append_column(CREATED_AT, rows[group.created_time])
        # No watermark: the batch materialization's watermark is its own (rows it has read from the warehouse).
        return GroupRefresh(schema=schema, rows=to_refresh(table, schema), watermark_us=None,
                            latest_event_us=None, source_rows=rows.num_rows)

    def run(self, stop: threading.Event | None = None, idle_exit_s: float | None = None) -> Metrics:
        """Consume until ``stop`` is set (or, with ``idle_exit_s``, until nothing arrived for that long)."""
        stop = stop or threading.Event()
        idle_since = time.monotonic()
        while not stop.is_set():
            entries = self._read()
            if entries:
                self.process(entries)
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        return self.metrics

    def close(self) -> None:
        self.updater.close()
        self.store.close()
        self.redis.close()



def main(argv: Sequence[str] | None = None) -> int:
    """Run one consumer until interrupted (or idle for ``--idle-exit`` seconds): the service command."""
    import argparse

    from models_ml.core.settings import load_settings

    parser = argparse.ArgumentParser(prog="models_ml.streaming.consumer", description="streaming feature pipeline")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--home", default=None)
    parser.add_argument("--stream", default="fraud:events")
    parser.add_argument("--group", default="features")
    parser.add_argument("--consumer", default="consumer-1")
    parser.add_argument("--count", type=int, default=2_000)
    parser.add_argument("--online-store", default=None)
    parser.add_argument("--idle-exit", type=float, default=None)
    args = parser.parse_args(argv)
    config = ConsumerConfig(args.redis_url, args.stream, args.group, args.consumer, args.count,
                            online_store=args.online_store)
    consumer = Consumer(load_settings(args.home), config)
    stop = threading.Event()
    # A service manager stops a service with SIGTERM: the micro-batch in hand is finished and acknowledged,
    # then the consumer closes (SIGKILL is safe too, see the module docstring; this is only quicker to resume).
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        metrics = consumer.run(stop, idle_exit_s=args.idle_exit)
    except KeyboardInterrupt:
        metrics = consumer.metrics
    finally:
        signal.signal(signal.SIGTERM, previous)
        consumer.close()
    print(f"consumed {metrics.events} events in {metrics.batches} micro-batches; dead letters {metrics.dead_letters}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
