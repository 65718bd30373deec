"""The inference service's prediction log: every prediction, written off the request path, for monitoring.

A request only appends a tuple to an in-memory queue (a ``deque``: O(1), no lock held while writing);
a background thread drains it every ``flush_seconds`` (or sooner when ``batch_size`` records wait) and
inserts them in one SQLite transaction into ``FTI_HOME/online/prediction_log.sqlite``, table
``prediction_log``. JSON encoding happens in that thread too, not in the request.

**Variants**: each row names the model version that scored it (``model_version``) and how it was served
(``variant``): ``champion`` (the answer, the default), ``canary`` (the answer, scored by the challenger for
its share of entities) or ``shadow`` (the challenger's score of the same request, never sent; ``shadow_of``
holds the ``prediction_id`` of the champion answer it shadows, so the two pair up exactly). Both columns were
added after the first release: a log file without them gets them on the service's next start (``champion``
and NULL for the old rows), and :func:`read_prediction_log` gives them for an older file too.

Why a SQLite file: the warehouse (DuckDB) admits one writing process and the pipelines write it, so the
service must not; SQLite in WAL mode lets the service append while monitoring (or several service
processes) read and write the same file, and it is one file instead of a Parquet part per flush.
:func:`read_prediction_log` gives monitoring an Arrow table (DuckDB can query it from there).

**No record stops the log**: a record that cannot be converted or inserted is skipped and counted
(``errors``), the rest of its batch is written; a database error (locked, I/O) keeps the batch for the next
attempt; should the thread die anyway it restarts itself, and :meth:`PredictionLog.ensure_running` (called
by the service's watcher) starts it again if it is gone (``restarts``). ``healthy`` is false while it is
down or paused, which ``/health`` reports as degraded.

**Bounded**: if the writer falls behind by ``max_queue`` records (a stuck disk), new records are dropped
and counted (``dropped``) rather than growing memory or slowing requests. Retention (``retention``: a
:class:`LogRetention`; the service's are in :mod:`models_ml.inference.online.serving.config`) runs every ``prune_seconds`` in the same
thread: rows older than ``max_age_days``, beyond the newest ``max_rows``, or beyond ``max_bytes`` of live
pages are deleted (oldest first; SQLite reuses the freed pages, so the file stops growing); below
``min_free_bytes`` of free disk the log pauses (records dropped and counted in ``dropped``) until space
returns. ``close`` flushes.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

LOGGER = logging.getLogger("fti.online")

COLUMNS = ("prediction_id", "requested_at", "model_name", "model_version", "as_of", "entity", "score",
           "missing_groups", "feature_age_seconds", "features", "request", "latency_ms", "variant", "shadow_of")
CHAMPION, CANARY, SHADOW = "champion", "canary", "shadow"  # the variants
_ADDED_COLUMNS = {"variant": f"text not null default '{CHAMPION}'", "shadow_of": "text"}  # after the first release

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
    latency_ms real not null,     -- arrival to score, inside the service
    variant text not null default 'champion', -- champion | canary (answers) | shadow (the challenger's, unsent)
    shadow_of text                -- a shadow row: the prediction_id of the champion answer it shadows
)"""
_INDEX = "create index if not exists prediction_log_requested_at on prediction_log (requested_at)"
_INSERT = f"insert or replace into prediction_log ({', '.join(COLUMNS)}) values ({', '.join('?' * len(COLUMNS))})"
_MAX_RETRIES = 3  # attempts at a batch a database error kept back
_DELETE_CHUNK = 50_000  # rows deleted per transaction by retention (writers wait at most one chunk)


def new_prediction_id() -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the milliseconds since the epoch, then 74 random bits. The log's
    primary key is this id, so ids that grow with time append at the index's right edge, which stays in
    SQLite's page cache; random ids (UUIDv4) landed on a random page of an index of millions of entries, and
    the writer's inserts slowed as the log grew (p99 at 2,000 requests/s 7-15 ms on an empty log, 28-40 ms
    on one of 0.7M rows). Two ids of the same millisecond differ in random bits, in no particular order."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # the version, 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the variant, RFC 9562's
    return f"{value:032x}"


def _json(value: Any) -> str:
    """Compact JSON of a record's part, by orjson (several times faster than ``json``, in the writer thread
    that shares the service process's GIL with the requests): the text ``json.dumps(value, separators=(",",
    ":"))`` gives parses to the same values (a datetime as its ``isoformat``), except that a NaN is ``null``
    (valid JSON) instead of ``NaN``."""
    return orjson.dumps(value, default=_default).decode()


def _default(value: Any) -> Any:
    """What orjson does not encode itself, as ``json.dumps`` did: a float or int subclass (numpy's float64)
    as its number, anything else as its text."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()


def _row(r: tuple[Any, ...]) -> tuple[Any, ...]:
    """A record (the first twelve :data:`COLUMNS`, then optionally the variant and ``shadow_of``) as a row."""
    variant = r[12] if len(r) > 12 else CHAMPION
    shadow_of = r[13] if len(r) > 13 else None
    return (r[0], _iso(r[1]), r[2], r[3], _iso(r[4]), _json(r[5]), r[6], _json(r[7]), _json(r[8]), _json(r[9]),
            _json(r[10]), r[11], variant, shadow_of)


def _columns(con: sqlite3.Connection) -> set[str]:
    return {row[1] for row in con.execute("pragma table_info(prediction_log)")}


def _add_missing_columns(con: sqlite3.Connection) -> None:
    """Give a log written before the variant columns existed those columns (idempotent)."""
    present = _columns(con)
    for name, definition in _ADDED_COLUMNS.items():
        if name not in present:
            con.execute(f"alter table prediction_log add column {name} {definition}")


@dataclass(frozen=True)
class LogRetention:
    """How much prediction log to keep; ``None`` or 0: no such limit (see the module docstring)."""

    max_age_days: float | None = 30.0
    max_rows: int | None = 5_000_000
    max_bytes: int | None = 2048 * 1024 * 1024
    min_free_bytes: int | None = 256 * 1024 * 1024
    prune_seconds: float = 60.0


class PredictionLog:
    """See the module docstring. ``submit`` is called by the request path; everything else by the thread."""

    def __init__(self, path: Path, *, flush_seconds: float = 0.25, batch_size: int = 5000,
                 max_queue: int = 200_000, on_written: Callable[[int], None] | None = None,
                 retention: LogRetention | None = None) -> None:
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.retention = retention if retention is not None else LogRetention()
        self.dropped = 0  # queue full, or paused for disk space
        self.written = 0
        self.errors = 0  # records that could not be written (skipped)
        self.restarts = 0  # times the writer loop or thread was started again after dying
        self.pruned = 0  # rows deleted by retention
        self.paused = False  # free disk below retention.min_free_bytes: records are dropped
        self.last_error: str | None = None
        self._on_written = on_written
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._retry: list[tuple[Any, ...]] = []  # converted rows of a batch a database error kept back
        self._retry_attempts = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._supervise = threading.Lock()

    # -- the request side -----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._retry)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def healthy(self) -> bool:
        """Writing: the thread runs and the disk guard does not hold it."""
        return self.alive and not self.paused

    def submit(self, record: tuple[Any, ...]) -> None:
        """Queue one record (the :data:`COLUMNS` in order, Python values; the variant and ``shadow_of`` may be
        left off: a champion answer); never blocks."""
        if len(self._queue) >= self.max_queue or self.paused:
            self.dropped += 1
            return
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {"alive": self.alive, "paused": self.paused, "written": self.written, "pending": self.pending,
                "dropped": self.dropped, "errors": self.errors, "restarts": self.restarts, "pruned": self.pruned,
                "last_error": self.last_error}

    # -- the thread ------------------------------------------------------------------------------------------

    def start(self) -> PredictionLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as con:
            con.execute("pragma journal_mode=wal")
            con.execute(_DDL)
            _add_missing_columns(con)
        self._started = True
        self._start_thread()
        return self

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fti-prediction-log", daemon=True)
        self._thread.start()

    def ensure_running(self) -> bool:
        """Start the writer thread again if it died (``True`` when it had to)."""
        with self._supervise:
            if not self._started or self._stop.is_set() or self.alive:
                return False
            LOGGER.error("prediction log: the writer thread had stopped; starting it again")
            self.restarts += 1
            self._start_thread()
            return True

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("pragma synchronous=normal")
        return con

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception as error:  # noqa: BLE001 - the log must outlive any failure; say it, then go on
                self.restarts += 1
                self.last_error = type(error).__name__
                LOGGER.exception("prediction log: the writer failed; starting it again")
                if self._stop.wait(1.0):
                    with contextlib.suppress(Exception):
                        self._loop_once_at_close()
                    return

    def _loop(self) -> None:
        con = self._connect()
        try:
            con.execute(_INDEX)
            next_prune = 0.0
            while not self._stop.is_set():
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                self._check_disk()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + max(self.retention.prune_seconds, 0.01)
                    try:
                        self.prune(con)
                    except sqlite3.Error:
                        LOGGER.exception("prediction log: retention failed; will retry")
                try:
                    self._write(con)
                except sqlite3.Error as error:
                    self.last_error = f"{type(error).__name__}: {error}"
                    LOGGER.exception("prediction log: write failed; will retry")
            self._write(con)
        finally:
            con.close()

    def _loop_once_at_close(self) -> None:
        with contextlib.closing(self._connect()) as con:
            self._write(con)

    def _write(self, con: sqlite3.Connection) -> None:
        written = self._drain(con)
        if written:
            self.written += written
            if self._on_written:
                self._on_written(written)

    def _drain(self, con: sqlite3.Connection) -> int:
        total = 0
        if self._retry:
            rows, self._retry = self._retry, []
            self._retry_attempts += 1
            if self._retry_attempts > _MAX_RETRIES:  # not a passing lock: give these rows up, count them
                self._retry_attempts = 0
                self.errors += len(rows)
                LOGGER.error("prediction log: %d records skipped after %d failed attempts", len(rows), _MAX_RETRIES)
            else:
                total += self._insert(con, rows)
                self._retry_attempts = 0
        while self._queue:
            if self.paused:
                self.dropped += len(self._queue)
                self._queue.clear()
                break
            rows = []
            while self._queue and len(rows) < self.batch_size:
                record = self._queue.popleft()
                try:
                    rows.append(_row(record))
                except Exception as error:  # noqa: BLE001 - one bad record: skip it, count it
                    self._record_error(error)
            total += self._insert(con, rows)
        return total

    def _insert(self, con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``rows`` in one transaction; a row SQLite refuses is skipped (counted); a database error
        (``OperationalError``: locked, I/O, full) keeps them all for the next attempt and is raised."""
        if not rows:
            return 0
        try:
            self._transaction(con, rows)
            return len(rows)
        except sqlite3.OperationalError:
            self._retry = rows
            raise
        except Exception:  # noqa: BLE001 - some row cannot be stored: find it, write the others
            written = 0
            for i, row in enumerate(rows):
                try:
                    self._transaction(con, [row])
                    written += 1
                except sqlite3.OperationalError:
                    self._retry = rows[i:]
                    raise
                except Exception as error:  # noqa: BLE001
                    self._record_error(error)
            return written

    @staticmethod
    def _transaction(con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        con.execute("begin immediate")
        try:
            con.executemany(_INSERT, rows)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise

    def _record_error(self, error: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        if self.errors == 1 or self.errors % 1000 == 0:
            LOGGER.warning("prediction log: a record could not be written and was skipped (%d so far): %s",
                           self.errors, self.last_error)

    # -- retention -------------------------------------------------------------------------------------------

    def _check_disk(self) -> None:
        floor = self.retention.min_free_bytes
        if not floor:
            self.paused = False
            return
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return
        paused = free < floor
        if paused != self.paused:
            if paused:
                LOGGER.error("prediction log: %d bytes free under %s (< %d): not writing until space returns",
                             free, self.path.parent, floor)
            else:
                LOGGER.warning("prediction log: disk space is back; writing again")
        self.paused = paused

    def prune(self, con: sqlite3.Connection | None = None) -> int:
        """Apply the retention limits now; the number of rows deleted."""
        if con is None:
            with contextlib.closing(self._connect()) as own:
                return self.prune(own)
        r = self.retention
        deleted = 0
        if r.max_age_days:
            cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=r.max_age_days)).isoformat()
            deleted += self._delete_older(con, cutoff)
        if r.max_rows:
            newest = con.execute("select max(rowid) from prediction_log").fetchone()[0]
            if newest is not None:  # rowids grow by one per row: the newest max_rows are the top ones
                deleted += self._delete_below(con, newest - r.max_rows + 1)
        if r.max_bytes:
            page_size = con.execute("pragma page_size").fetchone()[0]
            used = (con.execute("pragma page_count").fetchone()[0]
                    - con.execute("pragma freelist_count").fetchone()[0]) * page_size
            if used > r.max_bytes:
                low, high = con.execute("select min(rowid), max(rowid) from prediction_log").fetchone()
                if low is not None:
                    share = 1 - 0.9 * r.max_bytes / used  # down to 90% of the limit
                    deleted += self._delete_below(con, low + math.ceil((high - low + 1) * share))
        if deleted:
            self.pruned += deleted
            con.execute("pragma wal_checkpoint(truncate)")
        return deleted

    @staticmethod
    def _delete_older(con: sqlite3.Connection, cutoff: str) -> int:
        """Delete the rows that arrived before ``cutoff``, a chunk per transaction (by the ``requested_at``
        index). By arrival time, not by rowid: several workers append to one file, each a batch at a time, so
        insertion order is not arrival order, and a row inserted before an older one is not older."""
        deleted = 0
        while True:
            count = con.execute("delete from prediction_log where rowid in (select rowid from prediction_log "
                                "where requested_at < ? limit ?)", [cutoff, _DELETE_CHUNK]).rowcount
            deleted += count
            if count < _DELETE_CHUNK:
                return deleted

    @staticmethod
    def _delete_below(con: sqlite3.Connection, bound: int | None) -> int:
        """Delete the rows with rowid < ``bound`` (every row when ``None``), a chunk per transaction."""
        deleted = 0
        while True:
            low = con.execute("select min(rowid) from prediction_log").fetchone()[0]
            if low is None or (bound is not None and low >= bound):
                return deleted
            upper = low + _DELETE_CHUNK if bound is None else min(bound, low + _DELETE_CHUNK)
            deleted += con.execute("delete from prediction_log where rowid < ?", [upper]).rowcount

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after writing everything queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def read_prediction_log(path: Path, since: dt.datetime | None = None) -> pa.Table:
    """The logged predictions (arrived at or after ``since``), oldest first, as an Arrow table (every
    :data:`COLUMNS`, also from a file written before the variant columns: ``champion`` and NULL)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        where, params = ("where requested_at >= ?", [_iso(since)]) if since else ("", [])
        present = _columns(con)
        defaults = {"variant": f"'{CHAMPION}'", "shadow_of": "null"}
        selected = ", ".join(c if c in present or c not in defaults else f"{defaults[c]} as {c}" for c in COLUMNS)
        cursor = con.execute(f"select {selected} from prediction_log {where} order by requested_at", params)
        rows = cursor.fetchall()
    return pa.table({name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)})
