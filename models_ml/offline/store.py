"""The offline store: the one door between the library and the engine that holds the warehouse.

Library code speaks Ibis expressions (lazy, backend-neutral) or this small interface; the SQL dialect and
the connection live behind it, in one implementation module per engine. An implementation is chosen by
name from ``Settings.offline_store`` (``duckdb``, the embedded default, or ``spark``); the name maps to a ``module:Class``
path that is imported only when asked for, so this module imports no engine and no engine imports it
back. Adding an engine is one new module, one line in :data:`BACKENDS` and one entry in the store contract
tests' parameter list (``tests/offline/test_store_contract.py``).

What an implementation provides, and the rules each method keeps:

* :attr:`OfflineStore.ibis`: the Ibis backend, for lazy expressions over the warehouse's relations;
* reads: :meth:`table`, :meth:`to_arrow`, :meth:`relations`, :meth:`columns`, :meth:`arrow_schema`, and
  :meth:`latest_rows` (the latest row per entity since a watermark, for online materialization: a portable
  Ibis version here, which an engine may replace with its own query when building the expressions costs
  more than running them);
* atomic writes: :meth:`create_table` (a table appears whole or not at all), :meth:`replace_window` (a
  time window of a table is replaced in one transaction: readers see the old rows or the new ones),
  :meth:`insert`, :meth:`rename_table`, :meth:`drop_table`;
* the stateful layer's own small tables (model registry, ledgers, run records): :meth:`execute` and
  :meth:`query` with portable SQL and ``?`` parameters, inside :meth:`transaction` when several
  statements must commit together.

Two doors, one rule: :func:`opened` gives the engine's store (feature groups, labels, spines, snapshot
tables, predictions); :func:`opened_state` gives the stateful layer's store (registry, snapshot registry,
ledgers), which needs transactions, deletes and updates. An engine that has them (DuckDB) holds both, as
one store; one that has not (Spark's Parquet tables) leaves the state to :data:`STATE_BACKEND`, the
embedded DuckDB file under ``FTI_HOME``. :func:`opened_with_state` gives both to a step that needs both
(a snapshot: its rows on the engine, its registry row in the state), one store twice where they coincide.

Errors a retry can fix (another process holding the warehouse, a file system hiccup) are raised as the
types in :func:`transient_errors`, so orchestration retries those and nothing else.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import ibis
    import ibis.expr.types as ir
    import pyarrow as pa

    from models_ml.core.settings import Settings
    from models_ml.core.time import TimeRange

# name -> "module:Class"; imported on first use (see the module docstring)
BACKENDS: dict[str, str] = {
    "duckdb": "models_ml.offline.duckdb_store:DuckDBStore",
    "spark": "models_ml.offline.spark_store:SparkStore",  # the `spark` extra
}
#: where the stateful layer lives when the offline store's engine has no transactions (see the docstring)
STATE_BACKEND = "duckdb"


class OfflineStoreError(RuntimeError):
    """The offline store refused an operation; the message names the relation or setting and the fix."""


@dataclass(frozen=True)
class WindowReplaced:
    """What :meth:`OfflineStore.replace_window` did to a table."""

    table: str
    deleted: int
    inserted: int


#: the columns :meth:`OfflineStore.latest_rows` returns a row's event and created times in: fixed names, so
#: a reader needs no relation's time column names and no feature column clashes with them
EVENT_AT = "__event_at"
CREATED_AT = "__created_at"


@dataclass(frozen=True)
class LatestRows:
    """What :meth:`OfflineStore.latest_rows` read: the latest row per entity, and statistics of every row
    read (NULL keys and event times included), which tell the reader its next watermark."""

    rows: pa.Table
    rows_read: int
    max_event: dt.datetime | None
    max_created: dt.datetime | None  # None as well when the relation has no created time


class OfflineStore(abc.ABC):
    """One open warehouse. Use it as a context manager; :meth:`close` releases the engine's locks."""

    name: ClassVar[str]
    #: exception types of this engine that a retry can fix (lock conflicts, I/O)
    transient: ClassVar[tuple[type[BaseException], ...]] = ()
    #: whether :meth:`transaction`, deletes and updates work: the stateful layer's own tables (registry,
    #: ledgers) need them; Spark's Parquet tables have none
    transactional: ClassVar[bool] = True
    #: whether a point-in-time join into Arrow runs fastest one feature source at a time
    #: (:mod:`models_ml.offline.pit_by_source`): an embedded engine, where leaving it is a copy; a
    #: distributed one keeps the one lazy expression, where every query is a job
    joins_by_source: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> OfflineStore:
        """Connect to the warehouse of ``settings`` (creating an empty one when writable and missing)."""

    # -- the engine, for lazy expressions ----------------------------------------------------------

    @property
    @abc.abstractmethod
    def ibis(self) -> ibis.BaseBackend:
        """The Ibis backend over the warehouse (session time zone UTC)."""

    def table(self, schema: str, name: str) -> ir.Table:
        return self.ibis.table(name, database=schema)

    def to_arrow(self, expr: ir.Table) -> pa.Table:
        """Execute a lazy expression and leave the engine once, into Arrow."""
        return expr.to_pyarrow()

    # -- what exists --------------------------------------------------------------------------------

    @abc.abstractmethod
    def relations(self) -> set[tuple[str, str]]:
        """Every (schema, name) of a table or view in the warehouse."""

    @abc.abstractmethod
    def columns(self, schema: str, name: str) -> list[str] | None:
        """The relation's column names in order; None when it does not exist."""

    @abc.abstractmethod
    def arrow_schema(self, schema: str, name: str) -> pa.Schema:
        """The relation's columns as an Arrow schema (the types a read returns); OfflineStoreError when the
        relation does not exist."""

    def exists(self, schema: str, name: str) -> bool:
        return self.columns(schema, name) is not None

    def mount_external(self, schema: str, name: str, *, format: str, path: str, upstream_schema: str,
                       upstream_table: str) -> None:
        """Make an external feature group readable as ``schema.name`` on this connection, in place: the
        upstream DuckDB file's table (``format="duckdb"``, attached read-only) or Parquet files
        (``"parquet"``: a file, a folder or a glob). Nothing of its rows is written anywhere; an
        OfflineStoreError names what is missing. Engines that cannot read upstream files in place refuse."""
        raise OfflineStoreError(f"the {self.name} offline store cannot read external feature groups "
                                f"({format} {path}); use the duckdb engine for views that use them")

    def latest_rows(self, schema: str, name: str, *, keys: Sequence[str], event_time: str,
                    created_time: str | None, columns: Sequence[str], tie_break: Sequence[str] = (),
                    since: dt.datetime | None = None) -> LatestRows:
        """The latest row per entity (``keys``) of ``schema.name`` among the rows loaded at or after
        ``since`` (``created_time >= since``, or a NULL created time: nothing tells when such a row came;
        every row when ``since`` or ``created_time`` is None).

        "Latest" is the point-in-time join's tie rule, so the online store holds the row the offline join
        would take: the greatest ``event_time``, then the greatest ``created_time`` (NULL loses), then the
        greatest ``tie_break`` values in turn (NULL loses). Rows with a NULL key or event time take no part.
        :attr:`LatestRows.rows` holds ``columns``, then the row's event time as :data:`EVENT_AT` and its
        created time as :data:`CREATED_AT` (a NULL UTC timestamp without ``created_time``), in no
        particular order.

        This version is two portable Ibis expressions (the rows, the statistics). An engine may override it
        with its own query, returning the same Arrow table (the contract tests compare them)."""
        import ibis
        import ibis.expr.datatypes as idt

        table = self.table(schema, name)
        if since is not None and created_time is not None:
            watermark = ibis.literal(since, type=idt.Timestamp(timezone="UTC"))
            table = table.filter((table[created_time] >= watermark) | table[created_time].isnull())
        stats = table.aggregate(
            rows=table.count(), max_event=table[event_time].max(),
            **({"max_created": table[created_time].max()} if created_time else {}),
        )
        keyed = table.filter(*(table[c].notnull() for c in keys), table[event_time].notnull())
        order = [keyed[event_time].desc()]
        if created_time:
            order.append(keyed[created_time].desc(nulls_first=False))
        order += [keyed[c].desc(nulls_first=False) for c in tie_break]
        rank = ibis.row_number().over(group_by=[keyed[c] for c in keys], order_by=order)
        latest = keyed.filter(rank == 0)  # a window in a filter: SQL's QUALIFY
        created = latest[created_time] if created_time else ibis.null(idt.Timestamp(timezone="UTC"))
        rows = self.to_arrow(latest.select(*columns, **{EVENT_AT: latest[event_time], CREATED_AT: created}))
        counted = self.to_arrow(stats).to_pylist()[0]
        return LatestRows(rows=rows, rows_read=int(counted["rows"]), max_event=counted["max_event"],
                          max_created=counted.get("max_created"))

    # -- atomic writes ------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_table(self, schema: str, name: str, source: ir.Table | pa.Table, *, overwrite: bool = False) -> None:
        """Create ``schema.name`` from a lazy expression (run inside the engine) or an Arrow table, whole or
        not at all; the schema is created when missing. Refuses an existing table unless ``overwrite``."""

    @abc.abstractmethod
    def replace_window(self, schema: str, name: str, rows: pa.Table, *, time_column: str, window: TimeRange,
                       keys: Sequence[str]) -> WindowReplaced:
        """In one transaction: delete the rows of ``schema.name`` whose ``time_column`` lies in ``window``
        and any other row of an entity (``keys``) being written, then insert ``rows``. The table is created
        from ``rows`` when missing; a table with other columns is refused (OfflineStoreError)."""

    @abc.abstractmethod
    def insert(self, schema: str, name: str, rows: pa.Table, *, create: bool = True) -> int:
        """Append ``rows`` by column name (creating the table from their schema when missing and ``create``)."""

    @abc.abstractmethod
    def rename_table(self, schema: str, name: str, new_name: str) -> None: ...

    @abc.abstractmethod
    def drop_table(self, schema: str, name: str) -> None:
        """Drop the table if it exists."""

    # -- the stateful layer's own tables -----------------------------------------------------------

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (portable SQL, ``?`` parameters) and return its rows (empty for DDL/DML
        without a result); an ``insert``/``delete``/``update`` returns ``[(affected_rows,)]``."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query as dicts by column name."""
        names, rows = self._described(sql, params)
        return [dict(zip(names, row)) for row in rows]

    @abc.abstractmethod
    def _described(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query."""

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[OfflineStore]:
        """Commit the statements inside together, or none of them on an exception."""

    # -- lifetime -----------------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OfflineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backend_class(name: str) -> type[OfflineStore]:
    """The implementation registered under ``name`` (or given as ``module:Class``)."""
    path = BACKENDS.get(name, name if ":" in name else None)
    if path is None:
        raise OfflineStoreError(f"unknown offline store {name!r}: choose one of {sorted(BACKENDS)} "
                                f"(FTI_OFFLINE_STORE) or give a 'module:Class' path")
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def open_offline_store(settings: Settings, *, read_only: bool = False) -> OfflineStore:
    """Open the warehouse of ``settings`` with the engine it names (``settings.offline_store``)."""
    return backend_class(settings.offline_store).open(settings, read_only=read_only)


@contextlib.contextmanager
def opened(settings: Settings, *, read_only: bool = False) -> Iterator[OfflineStore]:
    """:func:`open_offline_store` as a context manager that always closes."""
    store = open_offline_store(settings, read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def state_backend_class(settings: Settings) -> type[OfflineStore]:
    """The engine of the stateful layer: the offline store's own when it has transactions, else
    :data:`STATE_BACKEND`."""
    engine = backend_class(settings.offline_store)
    return engine if engine.transactional else backend_class(STATE_BACKEND)


@contextlib.contextmanager
def opened_state(settings: Settings, *, read_only: bool = False) -> Iterator[OfflineStore]:
    """The stateful layer's store (registry, ledgers: tables that need transactions), always closed."""
    store = state_backend_class(settings).open(settings, read_only=read_only)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def opened_with_state(settings: Settings, *, read_only: bool = False) -> Iterator[tuple[OfflineStore, OfflineStore]]:
    """(the engine's store, the stateful layer's store): the same store twice when the engine holds the
    state itself, so a DuckDB home opens one connection, as before there were two doors."""
    with opened(settings, read_only=read_only) as store:
        if type(store) is state_backend_class(settings):
            yield store, store
            return
        with opened_state(settings, read_only=read_only) as state:
            yield store, state


def transient_errors(names: Sequence[str] | None = None) -> tuple[type[BaseException], ...]:
    """The exception types a retry can fix, for the named engines (default: every registered one that
    imports here): what orchestration's retry policy retries on, besides OSError."""
    found: list[type[BaseException]] = [OSError]
    for name in names if names is not None else BACKENDS:
        try:
            found += backend_class(name).transient
        except ImportError:  # an optional engine that is not installed cannot raise its errors either
            continue
    return tuple(dict.fromkeys(found))
