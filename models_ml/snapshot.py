"""Training snapshots: a feature view's spine joined point-in-time to its features, frozen under an id.

A snapshot is what makes a model version re-trainable bit for bit: the training pipeline never reads the
live feature tables directly, it reads an immutable table `snapshots.<snapshot_id>` whose content hash and
definition are recorded in `snapshots.snapshot_registry`.

How a snapshot is built (one Ibis expression, executed inside the engine):

* the **spine** is the feature view's label model restricted to ``start <= spine_time < end`` (half-open,
  UTC). It carries the entity keys, the spine time, the label's event time, the target, the request
  features, the slice columns and every spine-side join key of the feature groups;
* the spine time is the label's ``spine_time`` (``prediction_at`` for flight_delay: scheduled departure
  minus the lead time). It is the as-of time of the point-in-time join, so every feature value is one that
  was known when the prediction would have been made; the target itself is of course known only later,
  which is what a label is;
* every feature selection of the view is joined through :func:`models_ml.pit.point_in_time_join` with its
  group's keys, event time, created (loaded) time, TTL and output prefix.

The **content hash** is computed in the engine and does not depend on row order: each row is rendered to
a canonical text (NULLs marked, timestamps as epoch seconds + microseconds, so the session time zone does
not matter), hashed with MD5, and the sorted row hashes are hashed again together with the column names
and types. The **snapshot id** hashes the definition (view, versions, features, time range) together with
the content hash: building the same definition on the same data gives the same id and reuses the stored
table; new or corrected data under the same definition gives a new snapshot instead of mutating one.

**Splits** are by time, never random: rows before ``validation_start`` train, rows before
``test_start`` validate, the rest test. Cut times can be given or derived from fractions of rows; rows
sharing a spine time always land in the same split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.catalog import FeatureView
from models_ml.on_demand import add_on_demand
from models_ml.pit import FeatureSource, TimeBounds, point_in_time_join, spine_time_bounds
from models_ml.settings import Settings

SCHEMA = "snapshots"
REGISTRY = f"{SCHEMA}.snapshot_registry"
SPLIT_NAMES = ("train", "validation", "test")
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


def connect(settings: Settings) -> ibis.BaseBackend:
    """An Ibis DuckDB connection to the warehouse (session time zone UTC, set by Ibis)."""
    settings.ensure_home()
    return ibis.duckdb.connect(str(settings.warehouse_path))


def as_utc(value: str | dt.date | dt.datetime) -> dt.datetime:
    """A UTC instant from an ISO string, a date (its UTC midnight) or an aware datetime.

    A naive datetime is rejected: guessing its time zone is how off-by-hours leakage creeps in.
    """
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value) if ("T" in value or " " in value) else dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware instant (UTC)")
        return value.astimezone(_UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    raise TypeError(f"expected an ISO string, date or aware datetime, got {type(value).__name__}")


@dataclass(frozen=True)
class TimeRange:
    """A half-open window ``[start, end)`` on the spine time, in UTC."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        if not self.start < self.end:
            raise ValueError(f"empty time range: start {self.start} is not before end {self.end}")

    @classmethod
    def of(cls, start: str | dt.date | dt.datetime, end: str | dt.date | dt.datetime) -> TimeRange:
        return cls(as_utc(start), as_utc(end))


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

    @property
    def qualified_name(self) -> str:
        return f"{SCHEMA}.{self.snapshot_id}"

    def table(self, con: ibis.BaseBackend) -> ir.Table:
        return con.table(self.snapshot_id, database=SCHEMA)

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "feature_view": self.feature_view,
            "feature_view_version": self.feature_view_version,
            "feature_group_versions": self.feature_group_versions,
            "spine_model": self.spine_model,
            "spine_time": self.spine_time,
            "start_at": self.time_range.start.isoformat(),
            "end_at": self.time_range.end.isoformat(),
            "row_count": self.row_count,
            "content_hash": self.content_hash,
            "created_at": self.created_at.isoformat(),
        }


# --------------------------------------------------------------------------------------------------
# The expression


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def spine_columns(view: FeatureView, *, with_target: bool = True) -> list[str]:
    """The label model columns a snapshot keeps, in a fixed order; inference leaves out the target."""
    label = view.label
    join_keys = [spine_col for ref in view.features for spine_col in ref.join_keys]
    return _unique([
        *label.entity, label.spine_time, label.event_time, *([label.target] if with_target else []),
        *label.request_features, *label.slices, *join_keys, *view.on_demand_request_inputs,
    ])


def _utc_literal(value: dt.datetime) -> ir.TimestampScalar:
    return ibis.literal(value, type=idt.Timestamp(timezone="UTC"))


def spine_expr(
    con: ibis.BaseBackend, view: FeatureView, time_range: TimeRange, *, on: str | None = None,
    with_target: bool = True,
) -> ir.Table:
    """The label rows whose spine time (or the ``on`` column) lies in ``[start, end)``, with the columns the
    snapshot keeps. Batch inference selects by the label's event time and without the target."""
    label = view.label
    table = con.table(label.relation, database=label.schema)
    columns = spine_columns(view, with_target=with_target)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"label model {label.qualified_relation} lacks columns {missing} that view {view.name} needs")
    t = table[on or label.spine_time]
    return table.filter(t >= _utc_literal(time_range.start), t < _utc_literal(time_range.end)).select(*columns)


def feature_sources(con: ibis.BaseBackend, view: FeatureView) -> list[FeatureSource]:
    """One point-in-time source per feature selection of the view, described entirely by the catalog."""
    return [
        FeatureSource(
            table=con.table(ref.group.relation, database=ref.group.schema),
            keys=dict(ref.join_keys),
            event_time=ref.group.event_time,
            features=list(ref.columns),  # the model's features, then the on-demand features' inputs
            created_time=ref.group.created_time,
            ttl=ref.group.ttl,
            prefix=ref.prefix,
            unique_event_times=ref.group.unique_grain,
            unique_keys=ref.group.unique_entity,
        )
        for ref in view.features
    ]


def join_features(
    con: ibis.BaseBackend, view: FeatureView, spine: ir.Table, sources: Sequence[FeatureSource] | None = None,
    bounds: TimeBounds | None = None,
) -> ir.Table:
    """Every feature of the view joined point-in-time onto ``spine`` at the label's spine time, then the
    view's on-demand features computed from the joined row (:func:`models_ml.on_demand.add_on_demand`).

    The one join training snapshots and batch inference share, so the two cannot skew; ``sources``
    defaults to :func:`feature_sources` (inference passes those same sources, asking for the matched event
    times). The join turns the spine's time ``bounds`` into constant filters on the feature tables (see
    :func:`models_ml.pit.point_in_time_join`); without them, one small query measures them now, so the
    expression is lazy but fixed to the spine as it is at this moment.
    """
    sources = feature_sources(con, view) if sources is None else sources
    spine_time = view.label.spine_time
    bounds = spine_time_bounds(spine, spine_time) if bounds is None else bounds
    return add_on_demand(point_in_time_join(spine, spine_time, sources, spine_time_bounds=bounds), view)


def check_joined_rows(view: FeatureView, bounds: TimeBounds, joined_rows: int) -> None:
    """Refuse a join that changed the number of spine rows. It cannot, unless a feature group that a dbt
    `unique` test declares one row per entity holds duplicates (a failing test leaves the table built), and
    its plain key join then multiplied rows."""
    if bounds.rows is not None and joined_rows != bounds.rows:
        unique = sorted(ref.group.name for ref in view.features if ref.group.unique_entity)
        raise ValueError(f"the point-in-time join of view {view.name} gave {joined_rows:,} rows for "
                         f"{bounds.rows:,} spine rows: a group declared unique per entity ({', '.join(unique)}) "
                         f"has duplicates; run its dbt tests (`dbt test --select <group>`)")


def snapshot_expr(
    con: ibis.BaseBackend, view: FeatureView, time_range: TimeRange, bounds: TimeBounds | None = None
) -> ir.Table:
    """The snapshot's expression: spine columns then every feature, ordered by spine time and entity keys
    (see :func:`join_features` for the spine bounds)."""
    label = view.label
    joined = join_features(con, view, spine_expr(con, view, time_range), bounds=bounds)
    return joined.order_by([label.spine_time, *label.entity])


# --------------------------------------------------------------------------------------------------
# Content hash


def _render(column: ir.Column) -> ir.StringValue:
    """A canonical, time-zone-independent text of one value; NULL is a marker, not an empty string."""
    dtype = column.type()
    if dtype.is_timestamp():
        text = column.epoch_seconds().cast("int64").cast("string").concat(
            ".", column.microsecond().cast("string").lpad(6, "0")
        )
    elif dtype.is_string():
        text = column
    else:
        text = column.cast("string")
    return text.fill_null(_NULL)


def content_hash(table: ir.Table) -> str:
    """An order-independent hash of a table's rows and schema, computed in the engine."""
    row = ibis.literal(_SEP).join([_render(table[c]) for c in table.columns])
    hashes = table.select(row_hash=row.hexdigest("md5"))
    digest = hashes.aggregate(
        digest=hashes.row_hash.group_concat(sep="", order_by=hashes.row_hash).hexdigest("md5"),
    ).to_pyarrow()["digest"][0].as_py()
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


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Storing and reading snapshots


def ensure_registry(con: ibis.BaseBackend) -> None:
    con.raw_sql(f"create schema if not exists {SCHEMA}")
    con.raw_sql(_REGISTRY_DDL)


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
    )


def _registry_rows(con: ibis.BaseBackend, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    ensure_registry(con)
    cursor = con.con.execute(f"select * from {REGISTRY} {where} order by created_at, snapshot_id", list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def get_snapshot(con: ibis.BaseBackend, snapshot_id: str) -> SnapshotInfo:
    rows = _registry_rows(con, "where snapshot_id = ?", [snapshot_id])
    if not rows:
        raise KeyError(f"no snapshot {snapshot_id!r} in {REGISTRY}")
    return _info_from_row(rows[0])


def list_snapshots(con: ibis.BaseBackend, feature_view: str | None = None) -> list[SnapshotInfo]:
    if feature_view is None:
        return [_info_from_row(r) for r in _registry_rows(con)]
    return [_info_from_row(r) for r in _registry_rows(con, "where feature_view = ?", [feature_view])]


def build_snapshot(con: ibis.BaseBackend, view: FeatureView, time_range: TimeRange) -> SnapshotInfo:
    """Materialise the view's snapshot for ``time_range`` (or reuse the identical one already stored).

    The join runs once, into a scratch table; its hash decides the id. If that id exists the scratch table
    is dropped and the stored snapshot returned (``reused=True``); otherwise the scratch table is renamed
    and registered in one transaction, so a snapshot is never visible without its registry row.
    """
    ensure_registry(con)
    bounds = spine_time_bounds(spine_expr(con, view, time_range), view.label.spine_time)
    expr = snapshot_expr(con, view, time_range, bounds)
    scratch = f"_building_{uuid.uuid4().hex[:12]}"
    con.create_table(scratch, expr, database=SCHEMA)
    try:
        stored = con.table(scratch, database=SCHEMA)
        row_count = int(stored.count().to_pyarrow().as_py())
        check_joined_rows(view, bounds, row_count)
        digest = content_hash(stored)
        definition_hash = _sha(definition(view, time_range))
        snapshot_id = f"snap_{view.name}_{_sha([definition_hash, digest])[:12]}"
        existing = _registry_rows(con, "where snapshot_id = ?", [snapshot_id])
        if existing:
            return _info_from_row(existing[0], reused=True)
        label = view.label
        now = dt.datetime.now(_UTC)
        raw = con.con
        raw.execute("begin transaction")
        try:
            raw.execute(f'alter table {SCHEMA}."{scratch}" rename to "{snapshot_id}"')
            raw.execute(
                f"insert into {REGISTRY} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    snapshot_id, view.name, view.version, json.dumps(view.group_versions()), label.model,
                    label.qualified_relation, label.spine_time, time_range.start, time_range.end,
                    json.dumps(list(label.entity)), label.target, json.dumps(view.feature_columns),
                    json.dumps(list(label.slices)), row_count, digest, definition_hash, ibis.to_sql(expr), now,
                ],
            )
            raw.execute("commit")
        except Exception:
            raw.execute("rollback")
            raise
        scratch = None
        return get_snapshot(con, snapshot_id)
    finally:
        if scratch is not None:
            con.raw_sql(f'drop table if exists {SCHEMA}."{scratch}"')


# --------------------------------------------------------------------------------------------------
# Time splits


@dataclass(frozen=True)
class TimeSplit:
    """How to cut a snapshot by spine time: explicit cut instants, or fractions of rows.

    With ``validation_start``/``test_start`` given, rows with spine time < validation_start train, rows
    < test_start validate, the rest test. Otherwise the cuts are the spine times at the row fractions
    ``fractions`` (train, validation, test) in time order.
    """

    validation_start: dt.datetime | None = None
    test_start: dt.datetime | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        if (self.validation_start is None) != (self.test_start is None):
            raise ValueError("give both validation_start and test_start, or neither (then fractions apply)")
        if self.validation_start is not None:
            object.__setattr__(self, "validation_start", as_utc(self.validation_start))
            object.__setattr__(self, "test_start", as_utc(self.test_start))
            if not self.validation_start < self.test_start:
                raise ValueError("validation_start must come before test_start")
        if len(self.fractions) != 3 or min(self.fractions) <= 0 or abs(sum(self.fractions) - 1) > 1e-9:
            raise ValueError(f"fractions must be three positive numbers summing to 1, got {self.fractions}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "validation_start": self.validation_start.isoformat() if self.validation_start else None,
            "test_start": self.test_start.isoformat() if self.test_start else None,
            "fractions": list(self.fractions),
        }


@dataclass
class Splits:
    """The three time-ordered parts of a snapshot as Arrow tables, with the cut instants used."""

    train: pa.Table
    validation: pa.Table
    test: pa.Table
    validation_start: dt.datetime
    test_start: dt.datetime
    snapshot: SnapshotInfo
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "rows": {"train": self.train.num_rows, "validation": self.validation.num_rows, "test": self.test.num_rows},
        }


def _time_at_row(table: ir.Table, spine_time: str, offset: int) -> dt.datetime:
    cut = table.select(spine_time).order_by(spine_time).limit(1, offset=offset).to_pyarrow()
    return cut[spine_time][0].as_py().astimezone(_UTC)


def split_bounds(con: ibis.BaseBackend, info: SnapshotInfo, split: TimeSplit) -> tuple[dt.datetime, dt.datetime]:
    """The (validation_start, test_start) instants for ``split`` on this snapshot."""
    if split.validation_start is not None:
        return split.validation_start, split.test_start
    if info.row_count < 3:
        raise ValueError(f"snapshot {info.snapshot_id} has {info.row_count} rows: too few to split")
    table = info.table(con)
    train_fraction, validation_fraction, _ = split.fractions
    first = min(int(info.row_count * train_fraction), info.row_count - 1)
    second = min(int(info.row_count * (train_fraction + validation_fraction)), info.row_count - 1)
    return _time_at_row(table, info.spine_time, first), _time_at_row(table, info.spine_time, second)


def load_splits(con: ibis.BaseBackend, info: SnapshotInfo, split: TimeSplit | None = None) -> Splits:
    """Train / validation / test Arrow tables of a snapshot, cut by spine time, each in a fixed row order.

    The engine is left once (one ``to_pyarrow()``), with the split computed in it; a fixed order (spine
    time, entity keys) keeps training deterministic. Raises ValueError when a part would be empty.
    """
    split = split or TimeSplit()
    validation_start, test_start = split_bounds(con, info, split)
    table = info.table(con)
    t = table[info.spine_time]
    part = ibis.cases(
        (t < _utc_literal(validation_start), "train"),
        (t < _utc_literal(test_start), "validation"),
        else_="test",
    )
    arrow = table.mutate(__split=part).order_by([info.spine_time, *info.entity]).to_pyarrow()
    labels = arrow["__split"]
    arrow = arrow.drop_columns(["__split"])
    parts = {name: arrow.filter(pc.equal(labels, name)) for name in SPLIT_NAMES}
    empty = [name for name, p in parts.items() if p.num_rows == 0]
    if empty:
        raise ValueError(
            f"snapshot {info.snapshot_id} ({info.time_range.start:%Y-%m-%d} to {info.time_range.end:%Y-%m-%d}) "
            f"split at validation {validation_start:%Y-%m-%d %H:%M} / test {test_start:%Y-%m-%d %H:%M} "
            f"leaves {empty} empty"
        )
    return Splits(
        train=parts["train"], validation=parts["validation"], test=parts["test"],
        validation_start=validation_start, test_start=test_start, snapshot=info,
        rows={name: p.num_rows for name, p in parts.items()},
    )
