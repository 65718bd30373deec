"""Append-only landing of raw data batches, the way data really arrives.

A loader (``examples/<domain>/loader.py``) reads its source and hands each batch over as an Arrow table;
landing appends it to ``raw.<table>`` through the offline store. Every landed row carries ``_loaded_at``
(UTC ingestion time) and ``_batch_id``. A batch is landed at most once: ``raw._landed_batches`` records it
in the same transaction as its rows, so landing the same batch twice is a no-op and a crash half-way
leaves nothing behind. The ledger also names the feature-pipeline run that landed each batch (see
:func:`on_behalf_of`), so a run killed half-way is still credited with the batches it landed.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa

from models_ml.offline.store import OfflineStore

RAW_SCHEMA = "raw"
LEDGER = f"{RAW_SCHEMA}._landed_batches"
LOADED_AT, BATCH_ID = "_loaded_at", "_batch_id"

Clock = Callable[[], dt.datetime]

# The run each open store lands for (set by the feature pipeline around its loader call): loaders keep
# their plain `land_through(store, ...)` contract and every batch they land is still credited to the run.
_landing_runs: weakref.WeakKeyDictionary[OfflineStore, str] = weakref.WeakKeyDictionary()
_landing_guard = threading.Lock()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class LandedBatch:
    """What one landing call did for one (table, batch)."""

    table: str
    batch_id: str
    rows: int
    skipped: bool


@dataclass
class LandingReport:
    """Rows landed per table by one loader call, and the batches that were already there."""

    batches: list[LandedBatch] = field(default_factory=list)

    def rows_landed(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for batch in self.batches:
            totals[batch.table] = totals.get(batch.table, 0) + batch.rows
        return totals

    @property
    def total_rows(self) -> int:
        return sum(b.rows for b in self.batches)


def ensure_ledger(store: OfflineStore) -> None:
    store.execute(f"create schema if not exists {RAW_SCHEMA}")
    store.execute(
        f"""create table if not exists {LEDGER} (
            table_name varchar not null,
            batch_id varchar not null,
            row_count bigint not null,
            loaded_at timestamptz not null,
            primary key (table_name, batch_id)
        )"""
    )
    if "run_id" not in (store.columns(RAW_SCHEMA, LEDGER.split(".")[1]) or []):  # a home from before
        store.execute(f"alter table {LEDGER} add column run_id varchar")


@contextmanager
def on_behalf_of(store: OfflineStore, run_id: str) -> Iterator[None]:
    """Record every batch landed through ``store`` in the block as landed by run ``run_id``."""
    with _landing_guard:
        _landing_runs[store] = run_id
    try:
        yield
    finally:
        with _landing_guard:
            _landing_runs.pop(store, None)


def landed_by(store: OfflineStore, run_id: str) -> LandingReport:
    """What the ledger says run ``run_id`` landed (for a run that could not say so itself)."""
    ensure_ledger(store)
    rows = store.execute(f"select table_name, batch_id, row_count from {LEDGER} where run_id = ? "
                         f"order by loaded_at, table_name, batch_id", [run_id])
    return LandingReport([LandedBatch(table, batch, int(n), skipped=False) for table, batch, n in rows])


def ledger_by_table(store: OfflineStore) -> dict[str, list[int]]:
    """Batches and rows landed so far per raw table (reads only)."""
    if not store.exists(*LEDGER.split(".")):
        return {}
    rows = store.execute(f"select table_name, count(*), sum(row_count) from {LEDGER} group by table_name")
    return {table: [int(batches), int(total)] for table, batches, total in rows}


def unchanged_tables(now: dict[str, list[int]], built_from: dict[str, list[int]],
                     among: Collection[str] | None = None) -> set[str]:
    """The raw tables (``among``, default every table of either record) with no row landed between two
    :func:`ledger_by_table` records: the ledger only grows, so a table with the rows it had has had only
    empty batches since, whatever the landing clocks said. A table in neither record has no rows."""
    def rows(record: dict[str, list[int]], table: str) -> int:
        return record.get(table, [0, 0])[1]

    tables = now.keys() | built_from.keys() if among is None else among
    return {table for table in tables if rows(now, table) == rows(built_from, table)}


def landed_batch_ids(store: OfflineStore, table: str) -> set[str]:
    ensure_ledger(store)
    return {r[0] for r in store.execute(f"select batch_id from {LEDGER} where table_name = ?", [table])}


def land_batch(store: OfflineStore, table: str, batch_id: str, rows: pa.Table, clock: Clock = utc_now) -> LandedBatch:
    """Append ``rows`` to ``raw.<table>``, stamped with the ingestion time, once per batch.

    The raw table is created on first use with the columns of ``rows`` (their Arrow types) followed by
    ``_loaded_at`` (timestamptz) and ``_batch_id`` (varchar); later batches are appended by column name.
    """
    ensure_ledger(store)
    if batch_id in landed_batch_ids(store, table):
        return LandedBatch(table, batch_id, 0, skipped=True)
    loaded_at = clock()
    if loaded_at.tzinfo is None:
        raise ValueError("landing clock must return a timezone-aware datetime")
    n = rows.num_rows
    stamped = rows.append_column(
        pa.field(LOADED_AT, pa.timestamp("us", tz="UTC")),
        pa.repeat(pa.scalar(loaded_at, pa.timestamp("us", tz="UTC")), n),
    ).append_column(pa.field(BATCH_ID, pa.string()), pa.repeat(pa.scalar(batch_id, pa.string()), n))
    with _landing_guard:
        run_id = _landing_runs.get(store)
    with store.transaction():
        store.insert(RAW_SCHEMA, table, stamped)
        store.execute(f"insert into {LEDGER} (table_name, batch_id, row_count, loaded_at, run_id) "
                      f"values (?, ?, ?, ?, ?)", [table, batch_id, n, loaded_at, run_id])
    return LandedBatch(table, batch_id, n, skipped=False)
