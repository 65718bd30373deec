"""The embedded online store: one SQLite file in WAL mode (``FTI_HOME/online/online_store.sqlite``).

Why SQLite (``bench/online.py stores`` compares it with an in-process dict snapshot, LMDB and Redis on one
feature-view lookup of 5 groups): **lookups are fast enough by a wide margin** (tens of microseconds, far
below the HTTP and model costs of a request; a dict is faster still, LMDB close, Redis pays a network round
trip). **A refresh never tears a read and never blocks it**: WAL mode lets readers read the last committed
snapshot while one writer commits; a refresh is one transaction, and a reader's lookups of all groups share
one read transaction, so it sees all of a refresh or none of it (the bench counts torn reads among the
lookups made during a large refresh from another process: none). **Refreshes are incremental**: an upsert
per changed entity, where a dict snapshot (or a DuckDB file) must be rewritten and reloaded whole, in every
service process. **Several processes**: the materialization flow writes while any number of service
processes read; a DuckDB file admits one writing process and would lock the readers out. And it is in the
standard library and readable with any SQLite client (one table per group version, one column per feature).

Layout: ``fti_groups`` (group id, table, schema, watermark, latest event, materialized at, entities,
rows written) and one ``WITHOUT ROWID`` table per group version keyed by ``entity_key`` with ``event_us``
and ``created_us`` (epoch microseconds), the entity columns and the features. The upsert's ``WHERE``
clause compares ``(event_us, created_us)`` so a stored row never goes backwards, and leaves a row with the
same times and values untouched (a repeated refresh writes nothing).
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from models_ml.core.settings import Settings
from models_ml.inference.online.store import (
    Freshness,
    GroupRefresh,
    GroupSchema,
    OnlineStore,
    OnlineStoreError,
    RowsRequest,
    StoredRow,
    decoder,
    from_us,
    latest_us,
    to_us,
)

_SQL_TYPES = {"int": "integer", "float": "real", "bool": "integer", "str": "text", "timestamp": "integer",
              "date": "text", "json": "text"}

_META_DDL = """
create table if not exists fti_groups (
    group_id text primary key,
    table_name text not null,
    schema_json text not null,
    watermark_us integer,
    latest_event_us integer,
    materialized_at_us integer,
    entities integer not null default 0,
    rows_written integer not null default 0
)"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_name(schema: GroupSchema) -> str:
    return "fg_" + re.sub(r"[^0-9A-Za-z_]", "_", schema.id.replace(":", "__"))


class _ThreadConnection(threading.local):
    """Each thread's reader connection (None until the thread first reads)."""

    con: sqlite3.Connection | None = None


class SqliteStore(OnlineStore):
    """See the module docstring. Thread-safe: each thread reads through its own connection."""

    name: ClassVar[str] = "sqlite"

    @classmethod
    def from_settings(cls, settings: Settings, options: Mapping[str, Any], *, create: bool = True) -> SqliteStore:
        return cls(settings.online_store_path, create=create, **options)

    def __init__(self, path: Path, *, create: bool = True, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._create = create
        self._busy_timeout_ms = busy_timeout_ms
        self._local = _ThreadConnection()
        self._schemas: dict[str, GroupSchema] = {}
        self._tables: dict[str, str] = {}
        self._selects: dict[tuple[str, tuple[str, ...] | None], _Select] = {}
        self._lock = threading.Lock()
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect(write=True) as con:
                con.execute("pragma journal_mode=wal")
                con.execute(_META_DDL)

    # -- connections -------------------------------------------------------------------------------------

    def _connect(self, write: bool = False) -> sqlite3.Connection:
        if not write and not self.path.exists():
            raise OnlineStoreError(f"the online store {self.path} does not exist yet: run `fti online materialize`")
        mode = "rwc" if write and self._create else "rw"
        con = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, isolation_level=None,
                              check_same_thread=False, cached_statements=512)
        con.execute(f"pragma busy_timeout={self._busy_timeout_ms}")
        con.execute("pragma synchronous=normal")
        if not write:
            con.execute("pragma query_only=1")
        return con

    def _reader(self) -> sqlite3.Connection:
        con = self._local.con
        if con is None:
            con = self._local.con = self._connect()
        return con

    def close(self) -> None:
        con = self._local.con
        if con is not None:
            con.close()
            self._local.con = None

    def is_ready(self) -> bool:
        if not self.path.exists():
            return False
        try:
            self._reader().execute("select count(*) from fti_groups").fetchone()
        except sqlite3.Error:
            return False
        return True

    # -- metadata ----------------------------------------------------------------------------------------

    def _meta_rows(self, con: sqlite3.Connection) -> list[tuple[Any, ...]]:
        try:
            return con.execute("select group_id, table_name, schema_json, watermark_us, latest_event_us, "
                               "materialized_at_us, entities, rows_written from fti_groups").fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise

    def _load_schemas(self) -> None:
        self._set_layout(self._meta_rows(self._reader()))

    def _set_layout(self, meta_rows: list[tuple[Any, ...]]) -> None:
        """The groups' schemas and tables as ``fti_groups`` now says; the readers' statements are rebuilt."""
        with self._lock:
            self._schemas = {r[0]: GroupSchema.from_json(r[2]) for r in meta_rows}
            self._tables = {r[0]: r[1] for r in meta_rows}
            self._selects = {}

    def schemas(self) -> dict[str, GroupSchema]:
        if not self._schemas:
            self._load_schemas()
        return dict(self._schemas)

    def freshness(self) -> dict[str, Freshness]:
        rows = self._meta_rows(self._reader())
        self._set_layout(rows)  # a refresh may have added groups: keep the readers' schema cache in step
        return {r[0]: Freshness(group=r[0], watermark=from_us(r[3]), latest_event_at=from_us(r[4]),
                                materialized_at=from_us(r[5]), entities=int(r[6]), rows_written=int(r[7]))
                for r in rows}

    # -- writing -----------------------------------------------------------------------------------------

    def apply(self, refreshes: Sequence[GroupRefresh], materialized_at: dt.datetime) -> dict[str, int]:
        """Merge every refresh in one write transaction (readers keep reading the previous snapshot)."""
        written: dict[str, int] = {}
        con = self._connect(write=True)
        try:
            con.execute(_META_DDL)
            con.execute("begin immediate")
            try:
                for refresh in refreshes:
                    written[refresh.schema.id] = self._apply_one(con, refresh, to_us(materialized_at))
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        finally:
            con.close()
        self._schemas = {}  # re-read (and the statements rebuilt) on next use
        return written

    def _apply_one(self, con: sqlite3.Connection, refresh: GroupRefresh, materialized_us: int) -> int:
        schema = refresh.schema
        table = table_name(schema)
        current = con.execute("select schema_json, watermark_us, latest_event_us from fti_groups where group_id = ?",
                              [schema.id]).fetchone()
        watermark, latest = refresh.watermark_us, refresh.latest_event_us
        if current is None or GroupSchema.from_json(current[0]) != schema:
            # New group version, or its columns changed (a redefined dev model): start it afresh.
            con.execute(f"drop table if exists {_ident(table)}")
            columns = [*(f"{_ident(c)} text" for c in schema.entity),
                       *(f"{_ident(n)} {_SQL_TYPES[k]}" for n, k in schema.features if n not in schema.entity)]
            con.execute(f"create table {_ident(table)} (entity_key text primary key, event_us integer not null, "
                        f"created_us integer not null, {', '.join(columns)}) without rowid")
        else:  # never move the watermark or the latest event time backwards
            watermark, latest = latest_us(watermark, current[1]), latest_us(latest, current[2])
        names = ["entity_key", "event_us", "created_us", *schema.entity,
                 *(n for n in schema.feature_names if n not in schema.entity)]
        before = con.total_changes
        if refresh.rows.num_rows:
            rows = refresh.rows.select(names)
            columns = [rows[c].to_pylist() for c in names]
            quoted = [_ident(n) for n in names]
            updates = ", ".join(f"{q} = excluded.{q}" for q in quoted[1:])
            differs = " or ".join(f"excluded.{q} is not {q}" for q in quoted[3:]) or "false"
            # Newer wins; the same (event, created) rewrites only if a value differs (the refresh re-reads the
            # rows at the watermark, and its tie rule then decides), so a repeated refresh writes nothing.
            con.executemany(
                f"insert into {_ident(table)} ({', '.join(quoted)}) values ({', '.join('?' * len(names))}) "
                f"on conflict (entity_key) do update set {updates} "
                f"where (excluded.event_us, excluded.created_us) > (event_us, created_us) "
                f"or ((excluded.event_us, excluded.created_us) = (event_us, created_us) and ({differs}))",
                zip(*columns),
            )
        rows_written = con.total_changes - before
        entities = con.execute(f"select count(*) from {_ident(table)}").fetchone()[0]
        con.execute(
            "insert into fti_groups values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (group_id) do update set "
            "table_name = excluded.table_name, schema_json = excluded.schema_json, "
            "watermark_us = excluded.watermark_us, latest_event_us = excluded.latest_event_us, "
            "materialized_at_us = excluded.materialized_at_us, entities = excluded.entities, "
            "rows_written = excluded.rows_written",
            [schema.id, table, schema.to_json(), watermark, latest, materialized_us, entities, rows_written],
        )
        return rows_written

    # -- reading -----------------------------------------------------------------------------------------

    def read_rows(self, requests: Sequence[RowsRequest]) -> list[list[StoredRow | None]]:
        try:
            return self._read(requests)
        except sqlite3.OperationalError:
            self._load_schemas()  # a group recreated under us: re-read the layout once
            return self._read(requests)

    def _read(self, requests: Sequence[RowsRequest]) -> list[list[StoredRow | None]]:
        if not self._schemas:
            self._load_schemas()
        con = self._reader()
        if requests and all(len(request.keys) == 1 for request in requests):
            return self._read_one_each(con, requests)
        out: list[list[StoredRow | None]] = []
        con.execute("begin")  # one snapshot for every group of the lookup
        try:
            for request in requests:
                select = self._select(request)
                wanted = [k for k in dict.fromkeys(request.keys) if k is not None]
                found: dict[str, StoredRow] = {}
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    where = "where entity_key = ?" if len(chunk) == 1 else \
                        f"where entity_key in ({', '.join('?' * len(chunk))})"
                    for row in con.execute(select.sql + where, chunk):
                        found[row[0]] = select.row(row)
                out.append([found.get(k) if k is not None else None for k in request.keys])
        finally:
            con.execute("commit")
        return out

    def _read_one_each(self, con: sqlite3.Connection, requests: Sequence[RowsRequest]) -> list[list[StoredRow | None]]:
        """One key per group (a single request's lookup): one ``union all`` statement over the groups' tables,
        instead of a transaction of one statement per group. A statement reads one snapshot, as the
        transaction did, and costs one call into SQLite instead of two more than the groups."""
        selects = [self._select(request) for request in requests]
        key = ("union", *((r.group, None if r.features is None else tuple(r.features)) for r in requests))
        cached = self._selects  # replaced on a layout change, with what is built here
        sql = cached.get(key)
        if sql is None:
            width = max(len(select.features) for select in selects)
            sql = cached[key] = " union all ".join(select.part(i, width) for i, select in enumerate(selects))
        found: list[list[StoredRow | None]] = [[None] for _ in requests]
        for row in con.execute(sql, [request.keys[0] for request in requests]):
            found[row[0]][0] = selects[row[0]].row(row[1:])  # a NULL key matches nothing: stays None
        return found

    def _select(self, request: RowsRequest) -> _Select:
        """The statement and decoders of a read of these columns of this group, built once per layout."""
        key = (request.group, None if request.features is None else tuple(request.features))
        selects = self._selects  # a layout change meanwhile replaces it: what is built here then goes with it
        select = selects.get(key)
        if select is None:
            schema = self._schemas.get(request.group)
            if schema is None:
                self._load_schemas()
                schema = self._schemas.get(request.group)
                if schema is None:
                    raise OnlineStoreError(f"the online store holds no group {request.group!r}: "
                                           f"run `fti online materialize`")
            select = selects[key] = _Select.of(schema, self._tables[request.group], request.features)
        return select


@dataclass(frozen=True)
class _Select:
    """``select entity_key, event_us, created_us, <features> from <table>`` and how to decode its rows."""

    sql: str
    features: tuple[str, ...]
    decoders: tuple[Callable[[Any], Any], ...]
    columns: str  # ", <feature>, ..." as selected
    table: str

    @classmethod
    def of(cls, schema: GroupSchema, table: str, features: Sequence[str] | None) -> _Select:
        features = tuple(features) if features is not None else schema.feature_names
        kinds = schema.kinds()
        columns = "".join(f", {_ident(f)}" for f in features)
        return cls(f"select entity_key, event_us, created_us{columns} from {_ident(table)} ", features,
                   tuple(decoder(kinds[f]) for f in features), columns, table)

    def part(self, index: int, width: int) -> str:
        """This read of one key as part ``index`` of a ``union all`` whose parts select ``width`` features
        (the missing ones as NULL), its position first."""
        padding = ", null" * (width - len(self.features))
        return (f"select {index}, entity_key, event_us, created_us{self.columns}{padding} from {_ident(self.table)} "
                f"where entity_key = ?")

    def row(self, row: tuple[Any, ...]) -> StoredRow:
        return StoredRow(
            event_at=from_us(row[1]), created_at=from_us(row[2]),
            values={f: None if v is None else decode(v) for f, decode, v in zip(self.features, self.decoders, row[3:])},
        )
