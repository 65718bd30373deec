"""Training snapshots: a feature view's spine joined point-in-time to its features, frozen under an id.

A snapshot is what makes a model version re-trainable bit for bit: the training pipeline never reads the
live feature tables directly, it reads an immutable table `snapshots.<snapshot_id>` whose content hash and
definition are recorded in `snapshots.snapshot_registry`. The table lives on the engine's offline store; the
registry is state and lives where the stateful layer does (the same DuckDB file on the duckdb engine; the
home's embedded DuckDB file beside a Spark warehouse, see :func:`models_ml.offline.store.opened_state`).

How a snapshot is built (one Ibis expression, executed inside the engine):

* the **spine** is the feature view's label model restricted to ``start <= spine_time < end`` (half-open,
  UTC). It carries the entity keys, the spine time, the label's event time, the target, the request
  features, the slice columns and every spine-side join key of the feature groups;
* the spine time is the label's ``spine_time`` (``prediction_at`` for flight_delay: scheduled departure
  minus the lead time). It is the as-of time of the point-in-time join, so every feature value is one that
  was known when the prediction would have been made; the target itself is of course known only later,
  which is what a label is;
* every feature selection of the view is joined through :func:`models_ml.offline.pit.point_in_time_join` with its
  group's keys, event time, created (loaded) time, TTL and output prefix.

The **content hash** is computed in the engine and does not depend on row order: each row is rendered to
a canonical text (NULLs marked, timestamps as epoch seconds + microseconds, so the session time zone does
not matter), hashed with MD5, and the sorted row hashes are hashed again together with the column names
and types. The **snapshot id** hashes the definition (view, versions, features, time range) together with
the content hash: building the same definition on the same data gives the same id and reuses the stored
table; new or corrected data under the same definition gives a new snapshot instead of mutating one.

A snapshot is read back through the offline store (:meth:`SnapshotInfo.table`) and cut into time splits
by :mod:`models_ml.training.splits`.

**External groups** (read in place from another team's DuckDB file or Parquet files, never copied) are
fingerprinted as the snapshot reads them: per group, its identity (name, dbt source, location), the rows
the spine can reach (event time in ``[earliest spine time - ttl, latest spine time]``), their greatest
created (loaded) time and an order-independent content hash of them (:func:`external_reads`). The
fingerprints are recorded with the snapshot (``external_reads``) and enter its id, so a change upstream
gives a new snapshot even where it leaves the joined values alone, and an unchanged upstream the same one.
A model version's lineage names its snapshot, and so what it read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
from ibis.common.exceptions import UnsupportedOperationError

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import FeatureGroup, FeatureView
from models_ml.offline.pit import TimeBounds, spine_time_bounds
from models_ml.offline.retrieval import (
    check_joined_rows,
    join_features,
    spine_columns,
    spine_expr,
)
from models_ml.offline.store import OfflineStore

SCHEMA = "snapshots"
REGISTRY = f"{SCHEMA}.snapshot_registry"
_UTC = dt.timezone.utc
_NULL = "\\N"
_SEP = "\x1f"  # unit separator: cannot appear by accident between rendered values

_REGISTRY_DDL = f"""
create table if not exists {REGISTRY} (
    snapshot_id varchar primary key,
    feature_view varchar not null,
    feature_view_version integer not null,
    feature_group_versions json not null,
    spine_model varchar not null,
    spine_relation varchar not null,
    spine_time varchar not null,
    start_at timestamptz not null,
    end_at timestamptz not null,
    entity_keys json not null,
    target varchar not null,
    feature_columns json not null,
    slice_columns json not null,
    row_count bigint not null,
    content_hash varchar not null,
    definition_hash varchar not null,
    query_sql varchar not null,
    created_at timestamptz not null
)
"""
# Added after the first homes were made: a registry created before gets the column when it is next opened.
_EXTERNAL_READS_DDL = f"alter table {REGISTRY} add column if not exists external_reads json"
_COLUMNS = ("snapshot_id, feature_view, feature_view_version, feature_group_versions, spine_model, spine_relation, "
            "spine_time, start_at, end_at, entity_keys, target, feature_columns, slice_columns, row_count, "
            "content_hash, definition_hash, query_sql, created_at, external_reads")


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot: where it is, what it was built from, and what it contains."""

    snapshot_id: str
    feature_view: str
    feature_view_version: int
    feature_group_versions: dict[str, int | None]
    spine_model: str
    spine_time: str
    time_range: TimeRange
    entity: tuple[str, ...]
    target: str
    feature_columns: tuple[str, ...]
    slices: tuple[str, ...]
    row_count: int
    content_hash: str
    created_at: dt.datetime
    reused: bool = False
    # one fingerprint per external group the snapshot read (see the module docstring); empty without any
    external_reads: tuple[dict[str, Any], ...] = ()

    def table(self, store: OfflineStore) -> ir.Table:
        return store.table(SCHEMA, self.snapshot_id)


# --------------------------------------------------------------------------------------------------
# The expression


def snapshot_expr(
    store: OfflineStore, view: FeatureView, time_range: TimeRange, bounds: TimeBounds | None = None
) -> ir.Table:
    """The snapshot's expression: spine columns then every feature, ordered by spine time and entity keys
    (see :func:`join_features` for the spine bounds)."""
    label = view.label
    joined = join_features(store, view, spine_expr(store, view, time_range), bounds=bounds)
    return joined.order_by(label.order_keys)


# --------------------------------------------------------------------------------------------------
# Content hash


def _render_timestamp(column: ir.TimestampValue) -> ir.StringValue:
    """``<epoch seconds>.<microseconds, 6 digits>``, the same text on DuckDB and Spark.

    The first hashes were DuckDB's ``cast(epoch(t) as bigint)``: epoch seconds as a double, rounded half to
    even, so a time at .5 s or later shows the next second. Spark has no microsecond extraction through Ibis,
    so the text is rebuilt from what both engines give exactly (whole seconds of the time truncated to the
    second, the fraction as ``%f``) with that rounding kept: every hash DuckDB stored stays valid."""
    seconds = column.truncate("s").epoch_seconds().cast("int64")
    fraction = column.strftime("%f")
    micros = fraction.cast("int64")
    rounds_up = (micros > 500_000) | ((micros == 500_000) & (seconds % 2 != 0))
    return rounds_up.ifelse(seconds + 1, seconds).cast("string").concat(".", fraction)


def _render(column: ir.Column) -> ir.StringValue:
    """A canonical, time-zone-independent text of one value; NULL is a marker, not an empty string."""
    dtype = column.type()
    if dtype.is_timestamp():
        text = _render_timestamp(column)
    elif dtype.is_string():
        text = column
    else:
        text = column.cast("string")
    return text.fill_null(_NULL)


def _sorted_concat(row_hash: ir.StringColumn) -> ir.StringScalar:
    """The row hashes in order, as one text (NULL without rows): an ordered string aggregate where the engine
    has one (DuckDB), else the collected list sorted and joined (PySpark has no ordered aggregates), which
    is the same text."""
    ordered = row_hash.group_concat(sep="", order_by=row_hash)
    try:
        ibis.to_sql(ordered.as_table())  # compiling is where a backend refuses
        return ordered
    except UnsupportedOperationError:
        return row_hash.collect().sort().join("").nullif("")  # an empty list joins to ''


def content_hash(table: ir.Table) -> str:
    """An order-independent hash of a table's rows and schema, computed in the engine."""
    row = ibis.literal(_SEP).join([_render(table[c]) for c in table.columns])
    hashes = table.select(row_hash=row.hexdigest("md5"))
    digest = hashes.aggregate(digest=_sorted_concat(hashes.row_hash).hexdigest("md5")).to_pyarrow()["digest"][0].as_py()
    schema = json.dumps([[name, str(dtype)] for name, dtype in table.schema().items()])
    return hashlib.sha256(f"{schema}\n{digest or ''}".encode()).hexdigest()


def definition(view: FeatureView, time_range: TimeRange) -> dict[str, Any]:
    """Everything that decides what a snapshot contains, apart from the data itself."""
    label = view.label
    result = {
        "feature_view": view.name,
        "feature_view_version": view.version,
        "spine": {"relation": label.qualified_relation, "time": label.spine_time, "columns": spine_columns(view)},
        "range": [time_range.start.isoformat(), time_range.end.isoformat()],
        "features": [
            {
                "relation": ref.group.qualified_relation,
                "version": ref.group.version,
                "keys": ref.join_keys,
                "event_time": ref.group.event_time,
                "created_time": ref.group.created_time,
                "ttl_seconds": ref.group.ttl.total_seconds() if ref.group.ttl else None,
                "features": list(ref.features),
                "prefix": ref.prefix,
                # only when present, so views without on-demand features keep their definition hashes
                **({"on_demand_inputs": list(ref.on_demand_inputs)} if ref.on_demand_inputs else {}),
            }
            for ref in view.features
        ],
    }
    if view.on_demand:
        result["on_demand"] = [{"name": f.name, "function": f.function, "inputs": f.inputs} for f in view.on_demand]
    return result


def external_reads(store: OfflineStore, view: FeatureView, bounds: TimeBounds) -> list[dict[str, Any]]:
    """A fingerprint of what the snapshot reads of each external group of ``view`` (mounted already, by the
    join's feature sources): identity, rows the spine can reach, their latest load, their content hash."""
    groups: dict[str, FeatureGroup] = {ref.group.name: ref.group for ref in view.features if ref.group.external}
    reads = []
    for group in groups.values():
        table = store.table(group.schema, group.relation)
        event = table[group.event_time]
        if bounds.latest is not None:
            table = table.filter(event <= ibis.literal(bounds.latest, type=event.type()))
        if bounds.earliest is not None and group.ttl is not None:
            table = table.filter(event >= ibis.literal(bounds.earliest - group.ttl, type=event.type()))
        table = table.select(*(c.name for c in group.columns))
        measures = {"rows": table.count()}
        if group.created_time:
            measures["latest_loaded_at"] = table[group.created_time].max()
        row = store.to_arrow(table.aggregate(**measures)).to_pylist()[0]
        loaded = row.get("latest_loaded_at")
        external = group.external
        reads.append({
            "group": group.name, "kind": external.kind, "source": external.source, "location": external.path,
            "rows_read": int(row["rows"]), "latest_loaded_at": loaded.isoformat() if loaded else None,
            "content_hash": content_hash(table),
        })
    return reads


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Storing and reading snapshots


def ensure_registry(store: OfflineStore) -> None:
    store.execute(f"create schema if not exists {SCHEMA}")
    store.execute(_REGISTRY_DDL)
    store.execute(_EXTERNAL_READS_DDL)


def _info_from_row(row: dict[str, Any], reused: bool = False) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=row["snapshot_id"],
        feature_view=row["feature_view"],
        feature_view_version=int(row["feature_view_version"]),
        feature_group_versions=json.loads(row["feature_group_versions"]),
        spine_model=row["spine_model"],
        spine_time=row["spine_time"],
        time_range=TimeRange(row["start_at"], row["end_at"]),
        entity=tuple(json.loads(row["entity_keys"])),
        target=row["target"],
        feature_columns=tuple(json.loads(row["feature_columns"])),
        slices=tuple(json.loads(row["slice_columns"])),
        row_count=int(row["row_count"]),
        content_hash=row["content_hash"],
        created_at=row["created_at"].astimezone(_UTC),
        reused=reused,
        external_reads=tuple(json.loads(row.get("external_reads") or "[]")),
    )


def _registry_rows(store: OfflineStore, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    ensure_registry(store)
    return store.query(f"select * from {REGISTRY} {where} order by created_at, snapshot_id", params)


def get_snapshot(store: OfflineStore, snapshot_id: str) -> SnapshotInfo:
    rows = _registry_rows(store, "where snapshot_id = ?", [snapshot_id])
    if not rows:
        raise KeyError(f"no snapshot {snapshot_id!r} in {REGISTRY}")
    return _info_from_row(rows[0])


SCRATCH_PREFIX = "_building_"


def drop_abandoned_scratch(store: OfflineStore) -> list[str]:
    """Drop the scratch tables of snapshot builds that were killed (``finally`` never ran for them).

    Safe whenever this process has the warehouse open for writing: the engine admits one writing process,
    so a scratch table left in the file belongs to no live build."""
    abandoned = sorted(name for schema, name in store.relations()
                       if schema == SCHEMA and name.startswith(SCRATCH_PREFIX))
    for name in abandoned:
        store.drop_table(SCHEMA, name)
    return abandoned


def build_snapshot(store: OfflineStore, view: FeatureView, time_range: TimeRange, *,
                   state: OfflineStore | None = None) -> SnapshotInfo:
    """Materialise the view's snapshot for ``time_range`` (or reuse the identical one already stored).

    The join runs once, into a scratch table of ``store``; its hash decides the id. If that id is in the
    registry (in ``state``, the stateful layer's store; default ``store``) the scratch table is dropped and
    the stored snapshot returned (``reused=True``); otherwise the scratch table is renamed and registered,
    in one transaction where one store holds both, so a snapshot is never visible without its registry row.
    """
    state = store if state is None else state
    ensure_registry(state)
    drop_abandoned_scratch(store)
    bounds = spine_time_bounds(spine_expr(store, view, time_range), view.label.spine_time)
    expr = snapshot_expr(store, view, time_range, bounds)
    scratch: str | None = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    store.create_table(SCHEMA, scratch, expr)
    try:
        stored = store.table(SCHEMA, scratch)
        row_count = int(stored.count().to_pyarrow().as_py())
        check_joined_rows(view, bounds, row_count)
        digest = content_hash(stored)
        definition_hash = _sha(definition(view, time_range))
        reads = external_reads(store, view, bounds)
        # only views with external groups hash their fingerprints: the other views' ids do not move
        identity = [definition_hash, digest, *([reads] if reads else [])]
        snapshot_id = f"snap_{view.name}_{_sha(identity)[:12]}"
        existing = _registry_rows(state, "where snapshot_id = ?", [snapshot_id])
        if existing:
            return _info_from_row(existing[0], reused=True)
        label = view.label
        now = dt.datetime.now(_UTC)
        with _publishing(store, state, scratch, snapshot_id):
            state.execute(
                f"insert into {REGISTRY} ({_COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    snapshot_id, view.name, view.version, json.dumps(view.group_versions()), label.model,
                    label.qualified_relation, label.spine_time, time_range.start, time_range.end,
                    json.dumps(list(label.entity)), label.target, json.dumps(view.feature_columns),
                    json.dumps(list(label.slices)), row_count, digest, definition_hash, ibis.to_sql(expr), now,
                    json.dumps(reads),
                ],
            )
        scratch = None
        return get_snapshot(state, snapshot_id)
    finally:
        if scratch is not None:
            store.drop_table(SCHEMA, scratch)


@contextlib.contextmanager
def _publishing(store: OfflineStore, state: OfflineStore, scratch: str, snapshot_id: str) -> Iterator[None]:
    """Rename the scratch table to the snapshot's id, with the registry row written inside: one transaction
    where one store holds both. Across two stores the table comes first: a table left without its row
    (the registry write failed) is never read, since readers go through the registry, and a later build of
    the same content replaces it, its id being its content's."""
    if state is store:
        with store.transaction():
            store.rename_table(SCHEMA, scratch, snapshot_id)
            yield
        return
    store.drop_table(SCHEMA, snapshot_id)
    store.rename_table(SCHEMA, scratch, snapshot_id)
    with state.transaction():
        yield
