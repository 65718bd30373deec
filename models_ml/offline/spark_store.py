"""The offline store on Apache Spark: Parquet tables in a Hive metastore, read and written through Ibis's
PySpark backend (the only library module that imports pyspark; install the ``spark`` extra).

One Spark session per process: :func:`session_config` is the single source of its configuration, and
dbt-spark's ``session`` target (profiles.yml) passes the same values, so whichever of the two starts first
(both call ``getOrCreate``) gives the other the same session. ``Settings.spark_master`` ``local[N]`` runs
Spark in this process, with its warehouse and Derby metastore under ``FTI_HOME/spark``; an ``sc://`` URL
connects to a Spark Connect server, whose warehouse is the cluster's. A local session's warehouse is
fixed when it starts, so opening a second home in the same process is refused rather than written into
the first one's warehouse.

What Spark does not give, and how this store keeps the door's promises:

* Spark's ``TIMESTAMP`` is an instant (shown in the session zone, UTC here), but Ibis reads it as naive:
  :meth:`SparkStore.table` types those columns UTC-aware (a no-op cast in Spark), while a
  ``TIMESTAMP_NTZ`` column stays naive, so the point-in-time join still refuses it.
* Ibis' as-of join raises on PySpark: :mod:`models_ml.offline.pit` runs its portable plan here (sorts,
  windows, equi-joins), whose answers the point-in-time suite checks on this engine too.
* Parquet tables have no transactions, deletes or updates (Delta, Iceberg or Hudi would; their jars are not
  assumed): a table write goes to a staging table that replaces the target by a rename once it is complete,
  so a failed write leaves the previous rows; :meth:`SparkStore.replace_window` rewrites the table that way.
  :meth:`SparkStore.transaction`, and a ``delete`` or ``update`` statement, raise
  :class:`OfflineStoreError` (:attr:`OfflineStore.transactional` is False).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
import pyarrow as pa
import sqlglot
import sqlglot.expressions as sge

from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.offline.store import OfflineStore, OfflineStoreError, WindowReplaced

# pyspark is imported where it is used: the store registry imports this module to list every engine's
# transient errors (at every flow's start), which must not cost a DuckDB process pyspark's import.
if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import types as spark_types

UTC_TIMESTAMP = idt.Timestamp(timezone="UTC", scale=6)  # Spark keeps microseconds, as DuckDB
_STAGING_PREFIX = "__fti_staging_"
_NO_TRANSACTIONS = ("the spark offline store has Parquet tables, without transactions, deletes or updates: "
                    "keep the stateful layer on an engine that has them (FTI_OFFLINE_STORE=duckdb)")


def ident(name: str) -> str:
    """A quoted Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def is_connect(master: str) -> bool:
    return master.startswith("sc://")


def session_config(settings: Settings) -> dict[str, str]:
    """The configuration of a local session: the one source of these values, which dbt-spark's ``session``
    target repeats (profiles.yml, ``server_side_parameters``). UTC, so an instant never shifts on display;
    few shuffle partitions, because one machine's data in 200 tiny tasks is mostly task overhead; dynamic
    partition overwrite, so dbt's ``insert_overwrite`` replaces only the partitions it writes."""
    root = settings.spark_dir
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "fti",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        # derby.log goes beside the metastore, not into the working directory
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root}",
        # the Hive session's folder (default /tmp/<session id>_resources, left behind by every session)
        "spark.hadoop.hive.downloaded.resources.dir": str(root / "hive_resources"),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


def spark_session(settings: Settings) -> SparkSession:
    """The process's Spark session, started on first use (a local one takes 15-30 s); OfflineStoreError
    when the running session belongs to another home."""
    from pyspark.sql import SparkSession

    if is_connect(settings.spark_master):
        return _in_utc(SparkSession.builder.remote(settings.spark_master).getOrCreate())
    config = session_config(settings)
    session = SparkSession.getActiveSession()
    if session is None:
        settings.spark_dir.mkdir(parents=True, exist_ok=True)
        builder = SparkSession.builder
        for key, value in config.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()  # another thread's session, if there is one: checked below
        session.sparkContext.setLogLevel("ERROR")
    running = session.conf.get("spark.sql.warehouse.dir")
    wanted = config["spark.sql.warehouse.dir"]
    if running.removeprefix("file:").rstrip("/") != wanted.rstrip("/"):
        raise OfflineStoreError(f"this process's Spark session keeps its warehouse at {running}, not {wanted}: "
                                f"open one home per process on Spark (a session's warehouse is fixed)")
    return _in_utc(session)


def _in_utc(session: SparkSession) -> SparkSession:
    """The session with its time zone back at UTC if anyone changed it (a runtime setting, and a Connect
    server's sessions start in the server's zone): Ibis writes timestamp literals and reads results as
    wall-clock times of the session zone, which would shift every instant and TTL bound by the offset."""
    if session.conf.get("spark.sql.session.timeZone") != "UTC":
        session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def with_utc_times(table: ir.Table, spark_schema: spark_types.StructType) -> ir.Table:
    """``table`` with its Spark ``TIMESTAMP`` (instant) columns typed as UTC-aware timestamps for Ibis."""
    from pyspark.sql import types as spark_types

    instants = {f.name for f in spark_schema.fields if isinstance(f.dataType, spark_types.TimestampType)}
    casts = {name: UTC_TIMESTAMP for name in table.columns if name in instants}
    return table.cast(casts) if casts else table


def frame_from_arrow(session: SparkSession, rows: pa.Table) -> DataFrame:
    """Arrow rows as a Spark DataFrame. An aware timestamp becomes an instant whatever its zone; a naive one
    stays naive (``TIMESTAMP_NTZ``), where Spark would read it as an instant in the session zone."""
    from pyspark.sql import types as spark_types

    frame = session.createDataFrame(rows)
    for field in rows.schema:
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            frame = frame.withColumn(field.name, frame[field.name].cast(spark_types.TimestampNTZType()))
    return frame


def _rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    """A result's rows through Arrow, so instants come back aware (UTC), not as naive local times."""
    return [tuple(row.values()) for row in frame.toArrow().to_pylist()]


class SparkStore(OfflineStore):
    name: ClassVar[str] = "spark"
    transactional: ClassVar[bool] = False

    def __init__(self, session: SparkSession) -> None:
        self._session = session
        self._backend = ibis.pyspark.connect(session)

    @classmethod
    def open(cls, settings: Settings, *, read_only: bool = False) -> SparkStore:
        if read_only and not is_connect(settings.spark_master) and not (settings.spark_dir / "metastore_db").exists():
            raise OfflineStoreError(f"no warehouse at {settings.spark_dir}: run the feature pipeline "
                                    f"(`fti features run`) first")
        return cls(spark_session(settings))

    @property
    def ibis(self) -> ibis.BaseBackend:
        return self._backend

    @property
    def session(self) -> SparkSession:
        return self._session

    # -- reads --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _relation_read(self, schema: str, name: str) -> Iterator[None]:
        """Spark's "no such table or schema" as the door's error."""
        from pyspark.errors import AnalysisException

        try:
            yield
        except AnalysisException as error:
            if error.getCondition() in ("TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND"):
                raise OfflineStoreError(f"no relation {schema}.{name} in the warehouse: run the feature "
                                        f"pipeline first") from error
            raise

    def table(self, schema: str, name: str) -> ir.Table:
        with self._relation_read(schema, name):
            spark_schema = self._session.table(qualified(schema, name)).schema
        return with_utc_times(self._backend.table(name, database=schema), spark_schema)

    def arrow_table(self, rows: pa.Table) -> ir.Table:
        """Arrow rows as a lazy table of this session (a temporary view: nothing is written), times typed
        as :meth:`table` types them; for joins over rows that are not in the warehouse (tests, one-off
        spines)."""
        view = f"__fti_arrow_{uuid.uuid4().hex[:12]}"
        frame = frame_from_arrow(self._session, rows)
        frame.createOrReplaceTempView(view)
        return with_utc_times(self._backend.table(view), frame.schema)

    def relations(self) -> set[tuple[str, str]]:
        return {(database.name, table.name)
                for database in self._session.catalog.listDatabases()
                for table in self._session.catalog.listTables(database.name)
                if not table.isTemporary and not table.name.startswith(_STAGING_PREFIX)}

    def columns(self, schema: str, name: str) -> list[str] | None:
        catalog = self._session.catalog
        if not catalog.databaseExists(schema) or not catalog.tableExists(qualified(schema, name)):
            return None
        return list(self._session.table(qualified(schema, name)).columns)

    def arrow_schema(self, schema: str, name: str) -> pa.Schema:
        return self.table(schema, name).schema().to_pyarrow()

    # -- writes: whole tables, staged then renamed into place --------------------------------------

    def _create_schema(self, schema: str) -> None:
        self._session.sql(f"create database if not exists {ident(schema)}")

    @contextlib.contextmanager
    def _staging(self, schema: str) -> Iterator[str]:
        """A fresh staging table name in ``schema``; whatever is left under it is dropped at the end."""
        staging = f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
        try:
            yield staging
        finally:
            self._session.sql(f"drop table if exists {qualified(schema, staging)}")

    def _publish(self, schema: str, staging: str, name: str, *, replace: bool) -> None:
        """Put a complete staging table in place of ``name`` (renames: the rows are written already)."""
        if replace:
            self._session.sql(f"drop table if exists {qualified(schema, name)}")
        self._session.sql(f"alter table {qualified(schema, staging)} rename to {qualified(schema, name)}")

    def _write(self, frame: DataFrame, schema: str, name: str) -> None:
        frame.write.format("parquet").saveAsTable(qualified(schema, name))

    def create_table(self, schema: str, name: str, source: ir.Table | pa.Table, *, overwrite: bool = False) -> None:
        self._create_schema(schema)
        if not overwrite and self.exists(schema, name):
            raise OfflineStoreError(f"{schema}.{name} exists already: drop it, or pass overwrite=True to replace it")
        with self._staging(schema) as staging:
            if isinstance(source, pa.Table):
                self._write(frame_from_arrow(self._session, source), schema, staging)
            else:  # Ibis writes the expression inside Spark (and registers what it needs, e.g. UDFs)
                self._backend.create_table(staging, source, database=schema, format="parquet")
            self._publish(schema, staging, name, replace=overwrite)

    @contextlib.contextmanager
    def _view(self, rows: pa.Table) -> Iterator[str]:
        view = f"__fti_rows_{uuid.uuid4().hex[:12]}"
        frame_from_arrow(self._session, rows).createOrReplaceTempView(view)
        try:
            yield view
        finally:
            self._session.catalog.dropTempView(view)

    def _insert_rows(self, target: str, view: str, columns: Sequence[str]) -> None:
        """The insert step of a write, by column name (its own method so a test can make it fail half-way)."""
        selected = ", ".join(ident(c) for c in columns)
        self._session.sql(f"insert into {target} ({selected}) select {selected} from {view}")

    def _check_columns(self, schema: str, name: str, rows: pa.Table) -> list[str] | None:
        existing = self.columns(schema, name)
        if existing is not None and sorted(existing) != sorted(rows.column_names):
            raise OfflineStoreError(
                f"{schema}.{name} has columns {existing}, but this run writes {rows.column_names}: the entity "
                f"keys or times changed; rename or drop the old table"
            )
        return existing

    def replace_window(self, schema: str, name: str, rows: pa.Table, *, time_column: str, window: TimeRange,
                       keys: Sequence[str]) -> WindowReplaced:
        """The rows to keep (outside the window, of entities not being written) and ``rows`` go to a staging
        table that then replaces the table: a rewrite of the whole table, the price of Parquet without a
        table format that deletes."""
        existing = self._check_columns(schema, name, rows)
        self._create_schema(schema)
        target = qualified(schema, name)
        columns = existing or rows.column_names
        with self._view(rows) as view, self._staging(schema) as staging:
            if existing is None:
                before, kept = 0, self._session.sql(f"select * from {view} where false")
            else:
                event = ident(time_column)
                outside = f"{event} is null or {event} < ? or {event} >= ?"
                match = " and ".join(f"o.{ident(k)} = n.{ident(k)}" for k in keys) or "true"
                before = self._session.table(target).count()
                kept = self._session.sql(f"select o.* from (select * from {target} where {outside}) o "
                                         f"left anti join {view} n on {match}", args=[window.start, window.end])
            self._write(kept.select(*(ident(c) for c in columns)), schema, staging)
            kept_rows = self._session.table(qualified(schema, staging)).count()
            self._insert_rows(qualified(schema, staging), view, columns)
            self._publish(schema, staging, name, replace=existing is not None)
        return WindowReplaced(f"{schema}.{name}", int(before - kept_rows), rows.num_rows)

    def insert(self, schema: str, name: str, rows: pa.Table, *, create: bool = True) -> int:
        existing = self.columns(schema, name)
        if existing is None:
            if not create:
                raise OfflineStoreError(f"no table {schema}.{name} to insert into: create it first")
            self.create_table(schema, name, rows)
            return rows.num_rows
        with self._view(rows) as view:  # one Spark job: its commit protocol publishes all files or none
            self._insert_rows(qualified(schema, name), view, existing)
        return rows.num_rows

    def rename_table(self, schema: str, name: str, new_name: str) -> None:
        self._session.sql(f"alter table {qualified(schema, name)} rename to {qualified(schema, new_name)}")

    def drop_table(self, schema: str, name: str) -> None:
        self._session.sql(f"drop table if exists {qualified(schema, name)}")

    # -- the stateful layer's SQL --------------------------------------------------------------------

    def _spark_sql(self, sql: str) -> tuple[str, int | None]:
        """Portable (DuckDB-flavoured) SQL in Spark's dialect, and the rows an ``insert ... values`` adds;
        a delete or update is refused by name."""
        statement = sqlglot.parse_one(sql, read="duckdb")
        if isinstance(statement, (sge.Delete, sge.Update)):
            raise OfflineStoreError(f"cannot {statement.key} rows ({sql.strip()[:60]!r}): {_NO_TRANSACTIONS}")
        values = statement.expression if isinstance(statement, sge.Insert) else None
        added = len(values.expressions) if isinstance(values, sge.Values) else None
        return statement.sql(dialect="spark"), added

    def _run(self, sql: str, params: Sequence[Any]) -> tuple[DataFrame, int | None]:
        text, added = self._spark_sql(sql)
        return self._session.sql(text, args=list(params)) if params else self._session.sql(text), added

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        frame, added = self._run(sql, params)
        if added is not None:
            return [(added,)]
        return _rows(frame) if frame.columns else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def _described(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        frame, _ = self._run(sql, params)
        return list(frame.columns), _rows(frame)

    def transaction(self) -> contextlib.AbstractContextManager[SparkStore]:
        raise OfflineStoreError(f"no transactions: {_NO_TRANSACTIONS}")

    def close(self) -> None:
        """Leave the process's session running: dbt and later stores reuse it (it stops at exit)."""

