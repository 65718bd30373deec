"""Append-only landing of raw data batches, the way data really arrives.

Every landed row carries `_loaded_at` (UTC ingestion time) and `_batch_id`. A batch is landed at most once:
`raw._landed_batches` records it in the same transaction as its rows, so landing the same batch twice is a
no-op and a crash half-way leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

RAW_SCHEMA = "raw"
LEDGER = f"{RAW_SCHEMA}._landed_batches"

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


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    con.execute(
        f"""create table if not exists {LEDGER} (
            table_name varchar not null,
            batch_id varchar not null,
            row_count bigint not null,
            loaded_at timestamptz not null,
            primary key (table_name, batch_id)
        )"""
    )


def landed_batch_ids(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    ensure_ledger(con)
    rows = con.execute(f"select batch_id from {LEDGER} where table_name = ?", [table]).fetchall()
    return {r[0] for r in rows}


def land_batch(
    con: duckdb.DuckDBPyConnection,
    table: str,
    batch_id: str,
    select_sql: str,
    params: list | None = None,
    clock: Clock = utc_now,
) -> LandedBatch:
    """Append the rows of `select_sql` to `raw.<table>`, stamped with the ingestion time, once per batch.

    The raw table is created on first use with the columns of `select_sql` plus `_loaded_at`/`_batch_id`.
    """
    ensure_ledger(con)
    if batch_id in landed_batch_ids(con, table):
        return LandedBatch(table, batch_id, 0, skipped=True)
    loaded_at = clock()
    if loaded_at.tzinfo is None:
        raise ValueError("landing clock must return a timezone-aware datetime")
    target = f"{RAW_SCHEMA}.{table}"
    con.execute("begin transaction")
    try:
        con.execute(
            f"create table if not exists {target} as "
            f"select *, null::timestamptz as _loaded_at, null::varchar as _batch_id "
            f"from ({select_sql}) limit 0",
            params or [],
        )
        inserted = con.execute(
            f"insert into {target} by name "
            f"select *, ?::timestamptz as _loaded_at, ?::varchar as _batch_id from ({select_sql})",
            [loaded_at, batch_id, *(params or [])],
        ).fetchone()[0]
        con.execute(f"insert into {LEDGER} values (?, ?, ?, ?)", [table, batch_id, inserted, loaded_at])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return LandedBatch(table, batch_id, int(inserted), skipped=False)
