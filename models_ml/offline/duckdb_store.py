"""The embedded offline store: one DuckDB file under ``FTI_HOME`` (the only library module that imports duckdb).

A DuckDB file admits one writing process at a time; a second writer gets ``duckdb.IOException`` ("Could not
set lock"), which is this engine's transient error: orchestration retries it, everything else fails at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import uuid
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.offline.store import (
    CREATED_AT,
    EVENT_AT,
    LatestRows,
    OfflineStore,
    OfflineStoreError,
    WindowReplaced,
)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def parquet_pattern(path: str) -> str:
    """What ``read_parquet`` reads for a declared location: a folder means every Parquet file under it."""
    return str(Path(path) / "**" / "*.parquet") if Path(path).is_dir() else path


class DuckDBStore(OfflineStore):
    name: ClassVar[str] = "duckdb"
    transient: ClassVar[tuple[type[BaseException], ...]] = (duckdb.IOException,)
    joins_by_source: ClassVar[bool] = True

    def __init__(self, backend: ibis.BaseBackend) -> None:
        self._backend = backend
        self._raw: duckdb.DuckDBPyConnection = backend.con
        self._depth = 0  # nested transaction() calls join the outermost one
        # in-memory catalogs this connection mounted external groups in (their views read upstream in place)
        self._mounted: set[str] = set()

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> DuckDBStore:
        path = settings.warehouse_path
        if read_only and not path.exists():
            raise OfflineStoreError(f"no warehouse at {path}: run the feature pipeline (`fti features run`) first")
        if not read_only:
            settings.ensure_home()
        backend = ibis.duckdb.connect(str(path), read_only=read_only)
        if settings.duckdb_memory_limit:
            backend.raw_sql(f"set memory_limit = '{settings.duckdb_memory_limit}'")
        return cls(backend)

    @classmethod
    def in_memory(cls) -> DuckDBStore:
        """A throwaway store (tests, benchmarks)."""
        return cls(ibis.duckdb.connect())

    @property
    def ibis(self) -> ibis.BaseBackend:
        return self._backend

    # -- what exists --------------------------------------------------------------------------------

    def relations(self) -> set[tuple[str, str]]:
        """The warehouse's relations, and the external groups mounted on this connection (under their
        mount catalog's name); never the tables of an attached upstream file."""
        rows = self._raw.execute("select table_catalog, table_schema, table_name from information_schema.tables "
                                 "where table_catalog = current_database() or table_catalog in (select unnest(?))",
                                 [sorted(self._mounted)]).fetchall()
        return {(catalog if catalog in self._mounted else schema, name) for catalog, schema, name in rows}

    def columns(self, schema: str, name: str) -> list[str] | None:
        where = ("table_catalog = ? and table_schema = 'main'" if schema in self._mounted
                 else "table_catalog = current_database() and table_schema = ?")
        rows = self._raw.execute(
            f"select column_name from information_schema.columns where {where} and table_name = ? "
            "order by ordinal_position", [schema, name],
        ).fetchall()
        return [r[0] for r in rows] or None

    def mount_external(self, schema: str, name: str, *, format: str, path: str, upstream_schema: str,
                       upstream_table: str) -> None:
        """A view ``schema.name`` in an in-memory catalog of this connection over the upstream relation: the
        DuckDB file attached read-only (once per connection), or ``read_parquet`` over the files. The view
        is bound now, so a missing file, table or column set fails here, before any read."""
        if format == "duckdb":
            if not Path(path).is_file():
                raise OfflineStoreError(f"no DuckDB file at {path}")
            alias = "fti_upstream_" + hashlib.md5(path.encode()).hexdigest()[:12]
            body = f"select * from {ident(alias)}.{ident(upstream_schema)}.{ident(upstream_table)}"
            attach = f"attach if not exists {literal(path)} as {ident(alias)} (read_only)"
        elif format == "parquet":
            body, attach = f"select * from read_parquet({literal(parquet_pattern(path))})", None
        else:
            raise OfflineStoreError(f"unknown external format {format!r} (duckdb or parquet)")
        try:
            self._raw.execute(f"attach if not exists ':memory:' as {ident(schema)} (read_write)")
            self._mounted.add(schema)
            if attach:
                self._raw.execute(attach)
            self._raw.execute(f"create or replace view {ident(schema)}.main.{ident(name)} as {body}")
        except (duckdb.IOException, duckdb.CatalogException, duckdb.BinderException,
                duckdb.InvalidInputException) as error:
            raise OfflineStoreError(str(error).splitlines()[0]) from error

    @contextlib.contextmanager
    def _relation_read(self, schema: str, name: str) -> Iterator[None]:
        """Turn the engine's "no such table" into the door's error. Reading and failing costs one query;
        asking the catalog first would cost a second one on every read that succeeds."""
        try:
            yield
        except duckdb.CatalogException as error:
            raise OfflineStoreError(f"no relation {schema}.{name} in the warehouse: run the feature pipeline "
                                    f"first") from error

    def arrow_schema(self, schema: str, name: str) -> pa.Schema:
        with self._relation_read(schema, name):
            return self._raw.execute(f"select * from {qualified(schema, name)} limit 0").to_arrow_table().schema

    def latest_rows(self, schema: str, name: str, *, keys: Sequence[str], event_time: str,
                    created_time: str | None, columns: Sequence[str], tie_break: Sequence[str] = (),
                    since: dt.datetime | None = None) -> LatestRows:
        """The portable version's result from two parameterized statements: building and compiling its Ibis
        expressions costs more than running them on an incremental read, which reads a few rows."""
        relation = qualified(schema, name)
        event = ident(event_time)
        created = ident(created_time) if created_time else None
        since_filter = f"({created} >= ? or {created} is null)" if since is not None and created else None
        params = [since] if since_filter else []
        order = [f"{event} desc", *([f"{created} desc nulls last"] if created else []),
                 *(f"{ident(c)} desc nulls last" for c in tie_break)]
        keyed = " and ".join([*(f"{ident(c)} is not null" for c in keys), f"{event} is not null",
                              *([since_filter] if since_filter else [])])
        selected = ", ".join([*(ident(c) for c in columns), f"{event} as {ident(EVENT_AT)}",
                              f"{created or 'null::timestamptz'} as {ident(CREATED_AT)}"])
        latest = (f"select {selected} from {relation} where {keyed} qualify row_number() over "
                  f"(partition by {', '.join(ident(c) for c in keys)} order by {', '.join(order)}) = 1")
        stats = (f"select count(*), max({created or 'null::timestamptz'}), max({event}) from {relation}"
                 + (f" where {since_filter}" if since_filter else ""))
        with self._relation_read(schema, name):
            read, max_created, max_event = self._raw.execute(stats, params).fetchone()
            rows = self._raw.execute(latest, params).to_arrow_table()
        return LatestRows(rows=rows, rows_read=int(read), max_event=max_event,
                          max_created=max_created if created else None)

    # -- atomic writes ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _registered(self, rows: pa.Table) -> Iterator[str]:
        view = f"__fti_rows_{uuid.uuid4().hex[:12]}"
        self._raw.register(view, rows)
        try:
            yield view
        finally:
            self._raw.unregister(view)

    def create_table(self, schema: str, name: str, source: ir.Table | pa.Table, *, overwrite: bool = False) -> None:
        self._raw.execute(f"create schema if not exists {ident(schema)}")
        if isinstance(source, pa.Table):
            verb = "create or replace table" if overwrite else "create table"
            with self._registered(source) as view:  # one statement: the table appears whole or not at all
                self._raw.execute(f"{verb} {qualified(schema, name)} as select * from {view}")
        else:
            self._backend.create_table(name, source, database=schema, overwrite=overwrite)

    def _insert_rows(self, target: str, view: str) -> None:
        """The insert step of a replace (its own method so a test can make it fail half-way)."""
        self._raw.execute(f"insert into {target} by name select * from {view}")

    def replace_window(self, schema: str, name: str, rows: pa.Table, *, time_column: str, window: TimeRange,
                       keys: Sequence[str]) -> WindowReplaced:
        target = qualified(schema, name)
        existing = self.columns(schema, name)
        if existing is not None and sorted(existing) != sorted(rows.column_names):
            raise OfflineStoreError(
                f"{schema}.{name} has columns {existing}, but this run writes {rows.column_names}: the entity "
                f"keys or times changed; rename or drop the old table"
            )
        event = ident(time_column)
        with self._registered(rows) as view, self.transaction():
            self._raw.execute(f"create schema if not exists {ident(schema)}")
            self._raw.execute(f"create table if not exists {target} as select * from {view} limit 0")
            deleted = self._raw.execute(f"delete from {target} where {event} >= ? and {event} < ?",
                                        [window.start, window.end]).fetchone()[0]
            if rows.num_rows:
                # Rows outside the window of the entities being written (their time moved). Probing with
                # those rows only, not the whole table, halves the cost of this step.
                columns = ", ".join(ident(k) for k in keys)
                match = " and ".join(f"o.{ident(k)} = {view}.{ident(k)}" for k in keys)
                outside = f"{event} is null or {event} < ? or {event} >= ?"
                deleted += self._raw.execute(
                    f"delete from {target} where rowid in (select o.rowid from (select rowid, {columns} from "
                    f"{target} where {outside}) o semi join {view} on {match})", [window.start, window.end],
                ).fetchone()[0]
            self._insert_rows(target, view)
        return WindowReplaced(f"{schema}.{name}", int(deleted), rows.num_rows)

    def insert(self, schema: str, name: str, rows: pa.Table, *, create: bool = True) -> int:
        target = qualified(schema, name)
        with self._registered(rows) as view, self.transaction():
            if create:
                self._raw.execute(f"create schema if not exists {ident(schema)}")
                self._raw.execute(f"create table if not exists {target} as select * from {view} limit 0")
            self._insert_rows(target, view)
        return rows.num_rows

    def rename_table(self, schema: str, name: str, new_name: str) -> None:
        self._raw.execute(f"alter table {qualified(schema, name)} rename to {ident(new_name)}")

    def drop_table(self, schema: str, name: str) -> None:
        self._raw.execute(f"drop table if exists {qualified(schema, name)}")

    # -- the stateful layer's own tables -----------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._raw.execute(sql, list(params))
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._raw.executemany(sql, [list(r) for r in rows])

    def _described(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._raw.execute(sql, list(params))
        return [d[0] for d in cursor.description], cursor.fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[DuckDBStore]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._raw.execute("begin transaction")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._raw.execute("rollback")
            raise
        self._depth = 0
        self._raw.execute("commit")

    def close(self) -> None:
        self._backend.disconnect()
