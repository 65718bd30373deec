"""A private in-memory SQL engine for computations that must use the warehouse's SQL dialect without opening
the warehouse (the streaming feature pipeline runs the dbt models' compiled SQL over micro-batches here).
Built on the engine module's in-memory store, so the engine stays behind one module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from models_ml.offline.duckdb_store import DuckDBStore


_ROWS = "__scratch_rows"


class ScratchSql:
    """One in-memory DuckDB connection, session time zone UTC. Not shared between threads."""

    def __init__(self) -> None:
        self._store = DuckDBStore.in_memory()
        self._con = self._store.ibis.con
        self._con.execute("set TimeZone = 'UTC'")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._con.execute(sql, list(params))
        return cursor.fetchall() if cursor.description else []

    def arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        return self._con.execute(sql, list(params)).fetch_arrow_table()

    def put(self, name: str, rows: pa.Table) -> None:
        """Replace table ``name`` with ``rows`` (an Arrow table, types kept)."""
        self._with_rows(rows, f'create or replace table "{name}" as select * from {_ROWS}')

    def insert(self, name: str, rows: pa.Table) -> None:
        """Append ``rows`` to table ``name`` by column name."""
        self._with_rows(rows, f'insert into "{name}" by name select * from {_ROWS}')

    def _with_rows(self, rows: pa.Table, sql: str) -> None:
        """Run ``sql`` with ``rows`` visible as the view ``_ROWS`` for that statement only."""
        self._con.register(_ROWS, rows)
        try:
            self._con.execute(sql)
        finally:
            self._con.unregister(_ROWS)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> ScratchSql:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
