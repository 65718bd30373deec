"""Append-only landing of raw data batches, the way data really arrives.

A loader (``examples/<domain>/loader.py``) reads its source and hands each batch over as an Arrow table;
landing appends it to ``raw.<table>`` through the offline store. Every landed row carries ``_loaded_at``
(UTC ingestion time) and ``_batch_id``. A batch is landed at most once: ``raw._landed_batches`` records it
in the same transaction as its rows, so landing the same batch twice is a no-op and a crash half-way
leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from models_ml.offline.store import OfflineStore

RAW_SCHEMA = "raw"
LEDGER = f"{RAW_SCHEMA}._landed_batches"
LOADED_AT, BATCH_ID = "_loaded_at", "_batch_id"

Clock = Callable[[], dt.datetime]


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
    with store.transaction():
        store.insert(RAW_SCHEMA, table, stamped)
        store.execute(f"insert into {LEDGER} values (?, ?, ?, ?)", [table, batch_id, n, loaded_at])
    return LandedBatch(table, batch_id, n, skipped=False)
