"""External feature groups: features another team already computes, read where they live and never copied.

An external group (see :class:`models_ml.definitions.catalog.ExternalSource`) is a dbt source table
carrying ``meta.fti`` (a table of another DuckDB file, or Parquet files). It is mounted on the offline
store's connection (:meth:`OfflineStore.mount_external`: a view in an in-memory catalog over the attached
file or ``read_parquet``), so the point-in-time join, the online materialization and the statistics read
it like any group, as ``fti_external.<group>``. The upstream relation is checked against the declaration
before a row is read: a missing file or table, a declared column the upstream no longer has, a naive timestamp or a
type other than declared stops the caller with one line naming the group, its dbt source, the column and
the fix, so a snapshot or a scoring run publishes nothing built on a drifted upstream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as idt
from ibis.backends.sql.datatypes import DuckDBType

from models_ml.definitions.catalog import FeatureGroup
from models_ml.offline.store import OfflineStore, OfflineStoreError

_VIEW_FIX = "or have the upstream table written with the declared name and type"


class ExternalGroupError(ValueError):
    """An external group's upstream relation is missing or differs from its declaration; the message names
    the group, its source, the column and the fix."""


def _where(group: FeatureGroup) -> str:
    external = group.external
    return f"external feature group {group.name} (dbt source {external.source}, {external.describe()})"


def mount(store: OfflineStore, group: FeatureGroup) -> None:
    """Make ``group`` readable at its catalog address on ``store``'s connection and check the upstream
    against the declaration. Idempotent."""
    external = group.external
    if external is None:
        return
    if external.kind == "source":
        try:
            store.mount_external(group.schema, group.relation, format=external.format, path=external.path,
                                 upstream_schema=external.upstream_schema, upstream_table=external.upstream_table)
        except OfflineStoreError as error:
            what = "table" if external.format == "duckdb" else "files"
            raise ExternalGroupError(
                f"{_where(group)}: cannot read the upstream {what}: {error}; write the upstream {what} there, "
                f"or point the source's meta.fti.location at where it is") from error
    check_declared_columns(store, group)


def mount_all(store: OfflineStore, groups: Iterable[FeatureGroup]) -> None:
    """:func:`mount` every external group among ``groups`` (others are left alone)."""
    for group in groups:
        mount(store, group)


def mount_readable(store: OfflineStore, groups: Iterable[FeatureGroup]) -> dict[str, str]:
    """Mount what can be mounted; group name -> the error of each external group that cannot be read (a
    listing shows them instead of failing)."""
    problems: dict[str, str] = {}
    for group in groups:
        try:
            mount(store, group)
        except (ExternalGroupError, OfflineStoreError) as error:
            problems[group.name] = str(error)
    return problems


def _family(dtype: idt.DataType) -> str:
    """The kind of value a type holds, for comparing a declaration with the upstream: widths differ freely
    (an `integer` declared over a Parquet int64 is the same numbers), kinds of value do not."""
    if dtype.is_timestamp():
        return "timestamp with time zone" if dtype.timezone else "timestamp"
    for test, family in ((dtype.is_integer, "integer"), (dtype.is_floating, "floating"),
                         (dtype.is_decimal, "decimal"), (dtype.is_string, "text"), (dtype.is_boolean, "boolean"),
                         (dtype.is_date, "date")):
        if test():
            return family
    return str(dtype.copy(nullable=True))


def check_declared_columns(store: OfflineStore, group: FeatureGroup) -> None:
    """Every declared column exists upstream, with the declared kind of type; time columns are
    timezone-aware. Upstream columns the declaration does not name are ignored (they are not read)."""
    where = _where(group)
    try:
        actual = {field.name: ibis.dtype(field.type) for field in store.arrow_schema(group.schema, group.relation)}
    except OfflineStoreError as error:
        raise ExternalGroupError(f"{where}: cannot read it: {error}; write the upstream table, or point the "
                                 f"source's meta.fti.location at where it is") from error
    except Exception as error:  # an engine error while binding a view over a vanished upstream
        raise ExternalGroupError(f"{where}: cannot read it: {str(error).splitlines()[0]}; restore the upstream "
                                 f"table, or point the source's meta.fti.location at where it is") from error
    times = {group.event_time, group.created_time}
    for column in group.columns:
        if column.name not in actual:
            raise ExternalGroupError(
                f"{where}: declared column {column.name!r} is not in the upstream table (its columns: "
                f"{', '.join(actual)}); if it was renamed upstream, declare the new name in the source's "
                f"columns and meta.fti, {_VIEW_FIX}")
        upstream = actual[column.name]
        if column.name in times and upstream.is_timestamp() and upstream.timezone is None:
            raise ExternalGroupError(
                f"{where}: column {column.name!r} is a naive timestamp upstream ({upstream}, no time zone); "
                f"point-in-time joins need timestamp with time zone: have it written as timestamptz (UTC) "
                f"upstream (`{column.name} at time zone 'UTC'` converts one whose values are UTC)")
        if not column.data_type:
            continue
        try:
            declared = DuckDBType.from_string(column.data_type)
        except Exception:  # a type name this parser does not know: nothing to compare it with
            continue
        if _family(declared) != _family(upstream):
            raise ExternalGroupError(
                f"{where}: column {column.name!r} is {_family(upstream)} ({upstream}) upstream but declared "
                f"{column.data_type!r}; declare the upstream type in the source's columns, {_VIEW_FIX}")


@dataclass(frozen=True)
class SourceFreshness:
    """dbt's source freshness of an external group: the latest ``loaded_at_field`` and its status."""

    latest_loaded_at: dt.datetime | None
    status: str  # "pass" | "warn" | "error" | "unknown" (no loaded_at_field, or no rows)
    age: dt.timedelta | None


def source_freshness(store: OfflineStore, group: FeatureGroup, now: dt.datetime) -> SourceFreshness:
    """dbt's rule (``dbt source freshness``) read in place: the age of ``max(loaded_at_field)`` against
    ``warn_after`` / ``error_after``. The group must be mounted."""
    external = group.external
    field = external.loaded_at_field if external else None
    if field is None:
        return SourceFreshness(None, "unknown", None)
    table = store.table(group.schema, group.relation)
    latest = store.to_arrow(table.aggregate(latest=table[field].max())).to_pylist()[0]["latest"]
    if latest is None:
        return SourceFreshness(None, "unknown", None)
    age = now - latest
    status = "pass"
    if external.error_after is not None and age > external.error_after:
        status = "error"
    elif external.warn_after is not None and age > external.warn_after:
        status = "warn"
    return SourceFreshness(latest, status, age)
