"""Point-in-time join: give each spine row the feature values it could have seen at its own time.

This is the step that keeps label leakage out of training and makes batch inference reproducible, so its
semantics are pinned to Feast's `get_historical_features` (DuckDB offline store), for every feature source:

* a candidate row has the spine row's keys and ``event_time <= t`` (inclusive), where ``t`` is the spine
  time; with a TTL also ``event_time >= t - ttl`` (inclusive); no TTL means no lower bound;
* the candidate with the latest ``event_time`` wins; among rows with that same event time, the one with the
  latest ``created_time`` (a NULL created time loses to any value);
* remaining ties (same keys, event time and created time, or no ``created_time`` at all) go to the row
  whose feature values are largest, compared column by column in the order given, with a NULL smaller
  than any value (columns of nested types such as arrays take no part). Any rule would do; this one is
  deterministic and the same on every backend and plan;
* no candidate gives NULL features. A spine row is never dropped nor duplicated: duplicate spine rows each
  get the features, a NULL key never matches, a NULL spine time gets NULLs. No row order is promised;
* every time column must be a timezone-aware timestamp: comparing a naive timestamp with an aware one
  silently shifts by the session's time zone, so naive columns are rejected rather than guessed.

The result is one lazy Ibis expression; nothing runs until the caller executes it. How it runs depends on
what the backend can do (chosen in `_plan_for`, overridable with ``method=``):

* ``"asof"`` (DuckDB, Polars): a native as-of join finds, per spine row, the greatest feature row at or
  before ``t``. On DuckDB (``ASOF LEFT JOIN``) "greatest" compares one struct, (event time, created time,
  features), so the join's own sort picks the winner of a tie, and the feature side carries only its keys
  and that struct (features are read back out of it: no second copy to hold and sort); the usual
  ``ROW_NUMBER`` dedupe before the join gives the same answer at a higher cost (``bench/pit_join.py``
  compares it). Polars has no window functions in Ibis and its ``join_asof`` takes no struct keys, but it
  takes the last of equal times, so both inputs are sorted with the winner last. The TTL is applied after the join, by nulling features whose matched
  event time is older than ``t - ttl``: the latest row ``<= t`` is older than ``t - ttl`` exactly when no
  row lies in ``[t - ttl, t]``, so this is the same answer as filtering first. (Ibis' ``tolerance=`` is
  not used: it returns all-NULL features with differently named time columns and multiplies duplicate
  spine rows, ibis issue #11780.)
* ``"portable"`` (any backend with window functions but no as-of join: DataFusion, PySpark): spine rows and
  feature rows are stacked in one table and ordered by time within each key; a running maximum of each
  feature row's rank gives, at every spine row, the rank of the latest feature row at or before it, which
  is then joined back by equality. Only sorts, windows and equi-joins, O(n log n), no inequality join.

Both plans first drop feature rows that no spine row can reach (after the latest spine time or, with a
TTL, before the earliest spine time minus the TTL): with constants when the caller measured the spine's
time bounds, else with scalar subqueries where the backend has them. Whatever the plan, a source that
promises one row per key (``unique_keys``: static attributes) is joined by a plain left join on its keys.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
from ibis.backends import BaseBackend

__all__ = ["FeatureSource", "Method", "TimeBounds", "backend_of", "check_inputs", "literal_time",
           "point_in_time_join", "spine_time_bounds"]

Method = Literal["auto", "asof", "portable"]

# Internal column names start with this; spine columns and output features may not.
_INTERNAL = "__pit"


@dataclass(frozen=True)
class FeatureSource:
    """One feature table to join onto the spine, with the columns the join needs (Feast's feature view).

    ``keys`` lists join-key columns present under the same name in the spine and the feature table, or
    maps a spine column to a feature-table column (``{"origin": "airport_id"}``). ``created_time`` (when
    the row was loaded) breaks ties on ``event_time``: the latest wins. ``ttl`` bounds how old a matched
    row may be (``event_time >= t - ttl``, inclusive); ``None`` means no bound. Output columns are named
    ``prefix + feature``. ``unique_event_times`` is the caller's promise that the table holds at most one
    row per (keys, event time), e.g. a dbt-tested unique key: with no ties to break, the join skips the
    tie-break comparison (about half the cost of a DuckDB as-of join). The answer is the same either way.
    ``unique_keys`` promises at most one row per key (static attributes, a dbt `unique` test on the
    entity): the join is then a plain left join on the keys, the row used when its event time lies in
    [t - ttl, t], with no as-of machinery (a hash join instead of sorting every spine row). A broken
    promise multiplies spine rows, which callers detect by counting (``TimeBounds.rows``).
    ``matched_event_time`` names one more output column (taken as is, no prefix): the event time of the
    row that was used, NULL when there was none within the TTL; it tells a missing entity from a found
    row whose values are NULL, without carrying a copy of the event time through the join.
    """

    table: ir.Table
    keys: Sequence[str] | Mapping[str, str]
    event_time: str
    features: Sequence[str]
    created_time: str | None = None
    ttl: datetime.timedelta | None = None
    prefix: str = ""
    unique_event_times: bool = False
    unique_keys: bool = False
    matched_event_time: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            raise TypeError(f"features must be a sequence of column names, not the string {self.features!r}")
        if not self.features:
            raise ValueError("a feature source needs at least one feature column")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"duplicate feature columns in {list(self.features)}")
        if self.ttl is not None:
            if not isinstance(self.ttl, datetime.timedelta):
                raise TypeError(f"ttl must be a datetime.timedelta or None, got {type(self.ttl).__name__}")
            # Feast reads a zero TTL as "no TTL"; here that would be a silent surprise, so say None instead.
            if self.ttl <= datetime.timedelta(0):
                raise ValueError(f"ttl must be positive (use None for no TTL), got {self.ttl}")

    @property
    def key_map(self) -> dict[str, str]:
        """Spine column -> feature-table column, for every join key."""
        if isinstance(self.keys, Mapping):
            return dict(self.keys)
        if isinstance(self.keys, str):  # one key given bare: accept it rather than split it into letters
            return {self.keys: self.keys}
        return {key: key for key in self.keys}

    @property
    def output_names(self) -> dict[str, str]:
        """Feature-table column -> output column name."""
        return {feature: f"{self.prefix}{feature}" for feature in self.features}

    @property
    def added_columns(self) -> list[str]:
        """Every column the join adds for this source, in order."""
        extra = [self.matched_event_time] if self.matched_event_time is not None else []
        return [*self.output_names.values(), *extra]


def point_in_time_join(
    spine: ir.Table,
    spine_time: str,
    sources: Sequence[FeatureSource],
    *,
    method: Method = "auto",
    spine_time_bounds: TimeBounds | None = None,
) -> ir.Table:
    """Add to every spine row the features of each source as they were known at the row's `spine_time`.

    Returns the spine's columns, in order, followed by each source's output features in the order given:
    one row per spine row, as a lazy expression. ``method="auto"`` picks the fastest correct plan for the
    backend the tables live on (tables built with ``ibis.memtable`` run on Ibis' default backend, DuckDB);
    ``"asof"`` or ``"portable"`` force one (see the module docstring). ``spine_time_bounds``, the spine's
    earliest and latest time as :func:`spine_time_bounds` measured them, lets the join drop unreachable
    feature rows with constants, which the engine can push into its table scans, instead of subqueries
    over the spine (about 15% of a DuckDB batch-inference join, bench/batch_inference.py). Raises
    ``ValueError`` for a missing column, a naive or non-timestamp time column, or output names that clash.
    """
    check_inputs(spine, spine_time, sources)
    plan = _plan_for(backend_of(spine, sources), method)
    if spine_time_bounds is not None:
        prune: TimeBounds | _Prune | None = spine_time_bounds
    else:
        prune = _spine_time_subqueries(spine, spine_time) if plan.prune_to_spine_times else None

    result = spine
    for index, source in enumerate(sources):
        right = _prepare_source(source, index, spine, spine_time, prune)
        if source.unique_keys:
            result = _join_unique_keys(result, spine_time, right)
        elif plan.asof:
            result = _join_asof(result, spine_time, right, plan)
        else:
            result = _join_portable(result, spine_time, right)
    return result


# --------------------------------------------------------------------------------------------------
# Validation


def _describe(source: FeatureSource, index: int) -> str:
    """How an error message names a source: its position, and its table name when it has one."""
    try:
        name = source.table.get_name()
    except AttributeError:  # an expression (a filter, a join...) rather than a named table
        return f"feature source #{index}"
    return f"feature source #{index} (table {name!r})"


def _check_time_column(table: ir.Table, column: str, where: str) -> None:
    if column not in table.columns:
        raise ValueError(f"{where}: time column {column!r} not found; columns are {list(table.columns)}")
    dtype = table[column].type()
    if not dtype.is_timestamp():
        raise ValueError(f"{where}: time column {column!r} must be a timezone-aware timestamp, got {dtype}")
    if dtype.timezone is None:
        raise ValueError(
            f"{where}: time column {column!r} is a naive timestamp ({dtype}, no time zone). Point-in-time "
            f"joins need timezone-aware timestamps (timestamptz, UTC): cast it explicitly, e.g. "
            f"`.cast(dt.Timestamp(timezone='UTC'))` if the values are UTC."
        )


def check_inputs(spine: ir.Table, spine_time: str, sources: Sequence[FeatureSource]) -> None:
    """Raise the ``ValueError`` :func:`point_in_time_join` would for these inputs (missing or clashing
    columns, naive or non-timestamp times, incomparable keys), without building the join."""
    _check_spine(spine, spine_time)
    _check_sources(spine, sources)


def _check_spine(spine: ir.Table, spine_time: str) -> None:
    _check_time_column(spine, spine_time, "spine")
    internal = [c for c in spine.columns if c.startswith(_INTERNAL)]
    if internal:
        raise ValueError(f"spine columns {internal} start with {_INTERNAL!r}, which is reserved for the join")


def _check_sources(spine: ir.Table, sources: Sequence[FeatureSource]) -> None:
    taken = {column: "the spine" for column in spine.columns}
    for index, source in enumerate(sources):
        if not isinstance(source, FeatureSource):
            raise TypeError(f"sources[{index}] is a {type(source).__name__}, expected FeatureSource")
        where = _describe(source, index)
        table = source.table
        for spine_key, table_key in source.key_map.items():
            if spine_key not in spine.columns:
                raise ValueError(
                    f"{where}: join key {spine_key!r} not found in the spine; columns are {list(spine.columns)}"
                )
            if table_key not in table.columns:
                raise ValueError(
                    f"{where}: join key {table_key!r} not found in the feature table; "
                    f"columns are {list(table.columns)}"
                )
            spine_type, table_type = spine[spine_key].type(), table[table_key].type()
            if not _comparable(spine_type, table_type):
                raise ValueError(
                    f"{where}: join key spine.{spine_key} ({spine_type}) cannot be compared with "
                    f"{table_key} ({table_type})"
                )
        _check_time_column(table, source.event_time, where)
        if source.created_time is not None:
            _check_time_column(table, source.created_time, where)
        for feature in source.features:
            if feature not in table.columns:
                raise ValueError(
                    f"{where}: feature column {feature!r} not found; columns are {list(table.columns)}"
                )
        for output in source.added_columns:
            if output.startswith(_INTERNAL):
                raise ValueError(f"{where}: output column {output!r} starts with the reserved {_INTERNAL!r}")
            if output in taken:
                raise ValueError(
                    f"{where}: output column {output!r} clashes with a column of {taken[output]}; "
                    f"give the source a prefix"
                )
            taken[output] = where


def _comparable(left: dt.DataType, right: dt.DataType) -> bool:
    if left.is_numeric() and right.is_numeric():
        return True
    if left.is_temporal() and right.is_temporal():
        return True
    return left.castable(right) or right.castable(left)


# --------------------------------------------------------------------------------------------------
# Choosing the plan from what the backend can do


@dataclass(frozen=True)
class _Plan:
    asof: bool
    # How the as-of plan makes the winner of equal (keys, event time) the row the as-of join takes:
    # "struct": the as-of inequality compares (event time, then the tie-break columns) as one struct, so
    #           the engine's "greatest value <= t" is the winner itself, in the same single sort;
    # "sorted": sort both inputs by time (the winner last among equal event times) for an engine whose
    #           as-of join takes the *last* row of equal times and needs sorted inputs anyway.
    tie_break: Literal["struct", "sorted"] = "struct"
    # Drop feature rows outside [min(t) - ttl, max(t)] before the join (they can never match): a scalar
    # subquery over the spine's time column, cheap next to sorting feature history the spine never reaches
    # (constants instead when the caller measured the bounds: see point_in_time_join).
    prune_to_spine_times: bool = False


# Backends whose Ibis as-of join is a native backward as-of join, verified against this module's tests.
# DuckDB: ASOF LEFT JOIN, which compares structs field by field. A ROW_NUMBER dedupe before the join gives
# the same answer at a higher cost (bench/pit_join.py times it: it is the hand-written baseline there).
# Polars: `join_asof(strategy="backward")`, which "selects the last row in the right DataFrame whose 'on'
# key is less than or equal to the left's key" and assumes sorted inputs; it takes only primitive keys,
# Ibis 12 has no window functions on Polars, and its ordered `first()` aggregate returns corrupt strings
# on Polars 2.1 (`filter(True).sort_by().first()` in a group-by), so Polars resolves ties by sort order.
_ASOF_PLANS = {
    "duckdb": _Plan(asof=True, tie_break="struct"),
    "polars": _Plan(asof=True, tie_break="sorted"),
}


def backend_of(spine: ir.Table, sources: Sequence[FeatureSource]) -> BaseBackend:
    """The one backend the inputs live on; Ibis' default backend when all are in-memory tables."""
    backends = set()
    for table in [spine, *(source.table for source in sources)]:
        found, _ = table._find_backends()  # no public API tells bound from in-memory tables
        backends.update(found)
    if len(backends) > 1:
        names = sorted(backend.name for backend in backends)
        raise ValueError(f"the spine and feature tables live on different backends: {names}")
    return backends.pop() if backends else ibis.get_backend()


def _plan_for(backend: BaseBackend, method: Method) -> _Plan:
    """The as-of plan where the backend has a verified as-of join, else the portable one (needs windows)."""
    name = backend.name
    has_windows = backend.has_operation(ops.RowNumber)
    prune = backend.has_operation(ops.ScalarSubquery)
    if method == "auto":
        method = "asof" if name in _ASOF_PLANS else "portable"
    if method == "asof":
        if name not in _ASOF_PLANS:
            raise ValueError(f"method='asof' is not available on the {name} backend; use 'portable'")
        return dataclasses.replace(_ASOF_PLANS[name], prune_to_spine_times=prune)
    if method == "portable":
        if not has_windows:
            raise ValueError(
                f"the {name} backend has no window functions, which the portable point-in-time join needs"
            )
        return _Plan(asof=False, prune_to_spine_times=prune)
    raise ValueError(f"unknown method {method!r}; expected 'auto', 'asof' or 'portable'")


# --------------------------------------------------------------------------------------------------
# The feature side, shared by both plans


@dataclass(frozen=True)
class _Right:
    """A source's feature rows under internal names: keys, event time, created time, output features."""

    table: ir.Table
    key_map: dict[str, str]  # spine column -> internal key column
    event: str
    created: str | None
    outputs: list[str]
    ttl: datetime.timedelta | None
    tag: str  # prefix for further internal names of this source
    unique_event_times: bool = False
    matched_event_time: str | None = None  # output name of the matched row's event time, if asked for

    def tie_columns(self, table: ir.Table) -> list[str]:
        """The columns that decide among rows with equal keys and event time, most significant first."""
        if self.unique_event_times:
            return []
        features = [column for column in self.outputs if _orderable(table[column].type())]
        return ([self.created] if self.created else []) + features

    def winner_last(self, table: ir.Table) -> list:
        """Sort keys within one (keys, event time) group that put the winning row last.

        Latest created time, a NULL created time below any, then the largest feature values; each NULL
        test comes first because backends disagree on where NULLs sort.
        """
        order: list = []
        for column in self.tie_columns(table):
            order += [ibis.desc(table[column].isnull()), ibis.asc(table[column])]
        return order

    def winner_struct(self, table: ir.Table) -> ir.StructValue:
        """(event time, then for each tie column: is-not-NULL flag, value), compared field by field.

        The flag before each value means a NULL only ever meets a NULL, so no backend's NULL ordering
        inside structs matters; the greatest struct is the winner of the latest event time.
        """
        fields: dict[str, ir.Value] = {"event": table[self.event]}
        for i, column in enumerate(self.tie_columns(table)):
            fields[f"has{i}"] = table[column].notnull().cast("int32")
            fields[f"value{i}"] = table[column]
        return ibis.struct(fields)

    def probe_struct(self, time: ir.TimestampValue, table: ir.Table) -> ir.StructValue:
        """The spine side of `winner_struct`: (t, 2, NULLs...) is above every row at t (flags are 0 or 1)."""
        fields: dict[str, ir.Value] = {"event": time}
        for i, column in enumerate(self.tie_columns(table)):
            fields[f"has{i}"] = ibis.literal(2 if i == 0 else 0, "int32")
            fields[f"value{i}"] = ibis.null(table[column].type())
        return ibis.struct(fields)


def _orderable(dtype: dt.DataType) -> bool:
    return dtype.is_numeric() or dtype.is_string() or dtype.is_boolean() or dtype.is_temporal()


@dataclass(frozen=True)
class TimeBounds:
    """The earliest and latest spine time (inclusive), as :func:`spine_time_bounds` measured them, and the
    spine's row count. Any wider range is as good; a narrower one drops feature rows a spine row needs."""

    earliest: datetime.datetime | None
    latest: datetime.datetime | None
    rows: int | None = None

    def __post_init__(self) -> None:
        for value in (self.earliest, self.latest):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"time bounds must be timezone-aware, got {value!r}")


_MICROSECOND = datetime.timedelta(microseconds=1)


def _whole_microseconds(value: object, round_up: bool) -> datetime.datetime | None:
    """A bound as an aware datetime in UTC, widened to a whole microsecond (a nanosecond time, e.g. a
    pandas Timestamp from Polars, would otherwise be truncated and narrow the range)."""
    if value is None:
        return None
    nanoseconds = getattr(value, "nanosecond", 0)
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime(warn=False)
    if value.tzinfo is None:
        raise ValueError(f"spine time bounds came back naive ({value!r}); expected aware timestamps")
    value = value.astimezone(datetime.timezone.utc)
    return value + _MICROSECOND if round_up and nanoseconds else value


def spine_time_bounds(spine: ir.Table, spine_time: str) -> TimeBounds:
    """Run one small query for the spine's earliest and latest ``spine_time`` (NULLs ignored; both None
    for a spine without times) and its row count, to pass as :func:`point_in_time_join`'s
    ``spine_time_bounds``."""
    _check_spine(spine, spine_time)
    row = spine.aggregate(
        earliest=spine[spine_time].min(), latest=spine[spine_time].max(), rows=spine.count()
    ).to_pyarrow().to_pylist()[0]
    return TimeBounds(_whole_microseconds(row["earliest"], round_up=False),
                      _whole_microseconds(row["latest"], round_up=True), int(row["rows"]))


@dataclass(frozen=True)
class _Prune:
    """Spine-time bounds as expressions (scalar subqueries over the spine) when they are not known."""

    earliest: ir.Value
    latest: ir.Value


def _spine_time_subqueries(spine: ir.Table, spine_time: str) -> _Prune:
    # max() ignores NULL times; an empty spine gives NULL, which keeps no row, which is right.
    times = spine[spine_time]
    return _Prune(times.min().as_scalar(), times.max().as_scalar())


def _bound(value: datetime.datetime | ir.Value | None, dtype: dt.DataType) -> ir.Value:
    if value is None:  # a spine without times: every comparison is NULL, no feature row is kept
        return ibis.null(dtype)
    if isinstance(value, ir.Value):
        return value
    return literal_time(value, dtype)


def literal_time(value: datetime.datetime, dtype: dt.DataType) -> ir.TimestampScalar:
    """An aware time as a literal to compare with a column of timestamp type ``dtype``: in UTC, because in
    another zone engines spell it as a local wall-clock time, which is ambiguous in the hour a
    daylight-saving change repeats. Comparing instants across zones is exact."""
    return ibis.literal(value.astimezone(datetime.timezone.utc), dt.Timestamp(timezone="UTC", scale=dtype.scale))


def _prepare_source(
    source: FeatureSource, index: int, spine: ir.Table, spine_time: str, prune: TimeBounds | _Prune | None
) -> _Right:
    table = source.table
    tag = f"{_INTERNAL}{index}"
    key_map = {spine_key: f"{tag}_key{j}" for j, spine_key in enumerate(source.key_map)}
    # The created time only breaks ties: with unique event times it would be dead weight in the join.
    event = f"{tag}_event"
    unique = source.unique_event_times or source.unique_keys
    created = f"{tag}_created" if source.created_time and not unique else None

    # One type on both sides of every comparison (int32 vs int64 keys, ns vs us or another zone for times):
    # some engines refuse to join unlike types, and a timestamp's zone changes its display, not its instant.
    event_column = _cast_to(table[source.event_time], spine[spine_time].type())
    columns: dict[str, ir.Value] = {
        key_map[spine_key]: _cast_to(table[table_key], _key_type(spine[spine_key], table[table_key]))
        for spine_key, table_key in source.key_map.items()
    }
    columns[event] = event_column
    if created:
        columns[created] = table[source.created_time]
    columns.update({output: table[feature] for feature, output in source.output_names.items()})

    selected = table.select(**columns)
    # A row without keys or event time can never match; dropping it early keeps NULL keys from ever
    # meeting NULL keys, whatever the engine's NULL semantics in as-of joins.
    selected = selected.filter(*(selected[key].notnull() for key in key_map.values()), selected[event].notnull())
    if prune is not None:
        # Rows after the latest spine time, or (with a TTL) before the earliest minus the TTL, never match.
        time_type = selected[event].type()
        selected = selected.filter(selected[event] <= _bound(prune.latest, time_type))
        if source.ttl is not None:
            selected = selected.filter(selected[event] >= _bound(prune.earliest, time_type) - _interval(source.ttl))
    outputs = list(source.output_names.values())
    return _Right(selected, key_map, event, created, outputs, source.ttl, tag, source.unique_event_times,
                  source.matched_event_time)


def _interval(ttl: datetime.timedelta) -> ir.IntervalScalar:
    """A TTL as an exact interval: in seconds, or microseconds when it has a fraction of a second.

    Never in days: DuckDB subtracts day and month intervals from a timestamptz in the session's time zone
    (a "day" across a DST change is 23 or 25 hours). Seconds where possible, because some backends
    (DataFusion) have no sub-second intervals.
    """
    micros = ttl // datetime.timedelta(microseconds=1)
    if micros % 1_000_000 == 0:
        return ibis.interval(micros // 1_000_000, unit="s")
    return ibis.interval(micros, unit="us")


def _key_type(spine_key: ir.Column, table_key: ir.Column) -> dt.DataType:
    return dt.highest_precedence([spine_key.type(), table_key.type()])


def _cast_to(column: ir.Column, dtype: dt.DataType) -> ir.Column:
    return column if column.type() == dtype else column.cast(dtype)


def _finish(joined: ir.Table, keep: Sequence[str], spine_time: str, right: _Right, matched_event: str) -> ir.Table:
    """Keep the spine columns and add the features, NULL unless the matched row is within [t - ttl, t].

    The ``event <= t`` guard is already true for a match; it also makes a NULL spine time give NULLs.
    """
    t, event = joined[spine_time], joined[matched_event]
    valid = event <= t
    if right.ttl is not None:
        valid &= event >= t - _interval(right.ttl)
    features = {
        output: ibis.ifelse(valid, joined[output], ibis.null(joined[output].type())) for output in right.outputs
    }
    if right.matched_event_time is not None:
        features[right.matched_event_time] = ibis.ifelse(valid, event, ibis.null(event.type()))
    return joined.select(*keep, **features)


def _key_predicates(left: ir.Table, features: ir.Table, right: _Right) -> list[ir.BooleanValue]:
    return [_cast_to(left[spine_key], features[key].type()) == features[key]
            for spine_key, key in right.key_map.items()]


def _join_unique_keys(left: ir.Table, spine_time: str, right: _Right) -> ir.Table:
    """At most one row per key: the row of the spine row's keys, if any; `_finish` keeps its features
    when its event time lies in [t - ttl, t] (the same answer the as-of join gives, for any backend)."""
    joined = left.left_join(right.table, _key_predicates(left, right.table, right))
    return _finish(joined, left.columns, spine_time, right, right.event)


# --------------------------------------------------------------------------------------------------
# Plan "asof"


def _join_asof(left: ir.Table, spine_time: str, right: _Right, plan: _Plan) -> ir.Table:
    features = right.table
    ties = right.tie_columns(features) if plan.tie_break == "struct" else []
    if ties:
        # The struct already holds the event time and every orderable feature: the join carries only it
        # (and the features it cannot order), and the outputs are read back out of it after the join. A
        # second copy of those columns would double the rows the engine holds and sorts.
        order = f"{right.tag}_order"
        carried = [column for column in right.outputs if column not in ties]
        probe = right.probe_struct(left[spine_time], features)
        features = features.select(*right.key_map.values(), *carried, **{order: right.winner_struct(features)})
        on = probe >= features[order]
        joined = left.asof_join(features, on=on, predicates=_key_predicates(left, features, right))
        struct = joined[order]
        unpacked = joined.select(
            *left.columns,
            **{right.event: struct["event"]},
            **{column: struct[f"value{ties.index(column)}"] if column in ties else joined[column]
               for column in right.outputs},
        )
        return _finish(unpacked, left.columns, spine_time, right, right.event)
    else:
        if plan.tie_break == "sorted":
            left = left.order_by(spine_time)
            features = features.order_by([features[right.event], *right.winner_last(features)])
        on = left[spine_time] >= features[right.event]

    joined = left.asof_join(features, on=on, predicates=_key_predicates(left, features, right))
    return _finish(joined, left.columns, spine_time, right, right.event)


# --------------------------------------------------------------------------------------------------
# Plan "portable"


def _join_portable(left: ir.Table, spine_time: str, right: _Right) -> ir.Table:
    tag = right.tag
    features = right.table
    keys = list(right.key_map.values())
    rank, kind, time, latest = f"{tag}_rank", f"{tag}_kind", f"{tag}_time", f"{tag}_latest"

    # Rank the feature rows of each key from the oldest to the winner of the latest event time: the
    # highest rank at or before t is the row to take, ties included.
    order = [ibis.asc(features[right.event]), *right.winner_last(features)]
    features = features.mutate(**{rank: ibis.row_number().over(group_by=keys, order_by=order)})

    stack_keys = {spine_key: f"{tag}_stack{j}" for j, spine_key in enumerate(right.key_map)}
    rank_type = features[rank].type()
    spine_rows = left.select(
        *left.columns,
        **{stack_keys[s]: _cast_to(left[s], features[k].type()) for s, k in right.key_map.items()},
        **{time: left[spine_time], kind: ibis.literal(1, "int8"), rank: ibis.null(rank_type)},
    )
    feature_rows = features.select(
        **{column: ibis.null(left[column].type()) for column in left.columns},
        **{stack_keys[s]: features[k] for s, k in right.key_map.items()},
        **{time: features[right.event], kind: ibis.literal(0, "int8"), rank: features[rank]},
    )
    stacked = spine_rows.union(feature_rows, distinct=False)

    # Feature rows sort before spine rows at the same time, so event_time == t matches (inclusive).
    window = ibis.cumulative_window(group_by=list(stack_keys.values()), order_by=[stacked[time], stacked[kind]])
    stacked = stacked.mutate(**{latest: stacked[rank].max().over(window)})
    spine_rows = stacked.filter(stacked[kind] == 1).select(*left.columns, *stack_keys.values(), latest)

    joined = spine_rows.left_join(
        features,
        [spine_rows[stack_keys[s]] == features[k] for s, k in right.key_map.items()]
        + [spine_rows[latest] == features[rank]],
    )
    return _finish(joined, left.columns, spine_time, right, right.event)

