"""The inference service's prediction log: every prediction, written off the request path, for monitoring.

A request only appends a tuple to an in-memory queue (a ``deque``: O(1), no lock held while writing);
a background thread drains it every ``flush_seconds`` (or sooner when ``batch_size`` records wait) and
inserts them in one SQLite transaction into ``FTI_HOME/online/prediction_log.sqlite``, table
``prediction_log``. JSON encoding happens in that thread too, not in the request.

Why a SQLite file: the warehouse (DuckDB) admits one writing process and the pipelines write it, so the
service must not; SQLite in WAL mode lets the service append while monitoring (or several service
processes) read and write the same file, and it is one file instead of a Parquet part per flush.
:func:`read_prediction_log` gives monitoring an Arrow table (DuckDB can query it from there).

If the writer falls behind by ``max_queue`` records (a stuck disk), new records are dropped and counted
(``dropped``, exported as a metric) rather than growing memory or slowing requests. ``close`` flushes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

LOGGER = logging.getLogger("fti.online")

COLUMNS = ("prediction_id", "requested_at", "model_name", "model_version", "as_of", "entity", "score",
           "missing_groups", "feature_age_seconds", "features", "request", "latency_ms")

_DDL = """
create table if not exists prediction_log (
    prediction_id text primary key,
    requested_at text not null,   -- UTC ISO 8601, when the request arrived
    model_name text not null,
    model_version integer not null,
    as_of text not null,          -- UTC ISO 8601, the time the features were looked up as of
    entity text not null,         -- JSON: the label's entity keys
    score real not null,
    missing_groups text not null, -- JSON list of feature groups with no row within TTL
    feature_age_seconds text not null, -- JSON: group -> age of the row used (null when missing)
    features text not null,       -- JSON: the model's input values
    request text not null,        -- JSON: the validated request
    latency_ms real not null      -- arrival to score, inside the service
)"""


def _json(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()


class PredictionLog:
    """See the module docstring. ``submit`` is called by the request path; everything else by the thread."""

    def __init__(self, path: Path, *, flush_seconds: float = 0.25, batch_size: int = 5000,
                 max_queue: int = 200_000, on_written: Callable[[int], None] | None = None) -> None:
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.dropped = 0
        self.written = 0
        self._on_written = on_written
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PredictionLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as con:
            con.execute("pragma journal_mode=wal")
            con.execute(_DDL)
        self._thread = threading.Thread(target=self._run, name="fti-prediction-log", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("pragma synchronous=normal")
        return con

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, record: tuple[Any, ...]) -> None:
        """Queue one record (the :data:`COLUMNS` in order, Python values); never blocks."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def _drain(self, con: sqlite3.Connection) -> int:
        total = 0
        while self._queue:
            batch = []
            while self._queue and len(batch) < self.batch_size:
                batch.append(self._queue.popleft())
            rows = [(r[0], _iso(r[1]), r[2], r[3], _iso(r[4]), _json(r[5]), r[6], _json(r[7]), _json(r[8]),
                     _json(r[9]), _json(r[10]), r[11]) for r in batch]
            con.execute("begin immediate")
            try:
                con.executemany(f"insert or replace into prediction_log values ({', '.join('?' * len(COLUMNS))})", rows)
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
            total += len(rows)
        return total

    def _run(self) -> None:
        con = self._connect()
        try:
            while not self._stop.is_set():
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                try:
                    written = self._drain(con)
                except sqlite3.Error:
                    LOGGER.exception("prediction log: write failed; will retry")
                    continue
                if written:
                    self.written += written
                    if self._on_written:
                        self._on_written(written)
            self.written += self._drain(con)
        finally:
            con.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after writing everything queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def read_prediction_log(path: Path, since: dt.datetime | None = None) -> pa.Table:
    """The logged predictions (arrived at or after ``since``), oldest first, as an Arrow table."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        where, params = ("where requested_at >= ?", [_iso(since)]) if since else ("", [])
        cursor = con.execute(f"select {', '.join(COLUMNS)} from prediction_log {where} order by requested_at", params)
        rows = cursor.fetchall()
    return pa.table({name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)})
