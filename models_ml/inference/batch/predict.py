"""Batch inference: score the entities of a time window with a registered model, into a predictions table.

Pure functions; ``flows/batch_inference.py`` wires them into a Prefect flow. One run, step by step:

* **Window**: ``[start, end)``, UTC, half-open, on the label's *event time* (``label.event_time`` of the
  feature view; for flight_delay ``scheduled_departure_at``): a day of predictions is the flights
  *scheduled* that UTC day. :func:`day_window` turns ``(day, days)`` into the window.
* **Spine**: the training spine's own function (:func:`models_ml.training.spine_expr`), selecting by event
  time instead of spine time and leaving the target out (inference must not need it). Every row keeps its
  spine time (``prediction_at``), which is the as-of time of the features.
* **Features**: the training snapshot's own point-in-time join (:func:`models_ml.training.join_features`
  over :func:`models_ml.training.feature_sources`), so training and inference cannot skew. Each source
  also outputs the matched row's event time under an internal name (``matched_event_time``). It is NULL
  exactly when the group had no row within its TTL, which is how missing groups are detected; it is an
  output of the join, not an input, so it cannot change which row the join picks.
* **Model**: the version behind the alias (``champion`` by default) is resolved in the registry. Its
  lineage names the feature view and the feature group versions it was trained on; the view is taken from
  the catalog with each group pinned at that version (a newer v2 of a group does not leak into a model
  trained on v1). The run is refused with :class:`PredictionError`, naming the group and version, when a
  trained-on group version is not in the catalog (the dbt project), is not built in the warehouse, or
  lacks a feature the model needs.
* **Scoring**: :func:`models_ml.training.train.feature_matrix` (the encoder training uses, as a float matrix), then
  LightGBM, a chunk of rows at a time.

**Missing features rule.** Every spine row is scored; none is dropped or left unscored. A feature group
with no row for the entity within its TTL before the prediction time gives NULL features, exactly as in
the training snapshot, where the model learnt what to do with them (LightGBM routes NaN like a missing
value; unseen categories are NaN too). Each predictions row says which groups were missing, in
``missing_feature_groups`` (a list of group names, empty when complete) and ``has_missing_features``; a
consumer that would rather not act on such scores filters on that flag. A NULL *value* inside a found
group row (a weather station's missing gust) is ordinary data and not flagged.

**Predictions table**: ``predictions.<model>`` for the champion (``predictions.<model>__<alias>`` for
another alias or an explicit version, so a challenger's shadow scores never mix with the champion's). One
row per entity: the entity keys, the spine time, the event time, ``score``, ``has_missing_features``,
``missing_feature_groups``, ``model_name``, ``model_version``, ``feature_view_version`` and ``scored_at``
(UTC, one instant per run). The view's name is the registry's (model version -> lineage); it is not
repeated per row because every string column costs a visible share of a large write.

**Idempotent write**: in one DuckDB transaction, delete the table's rows whose event time lies in the
window (whatever version wrote them) and any row of an entity being written (so an entity whose event
time moved is not left twice), then insert the new rows from Arrow. Re-running a window replaces it and
never duplicates; a failure before commit (or a killed process) rolls back to the previous rows.

**Default day** (:func:`default_day`, used when no day is given): the UTC day of the earliest spine row
later than the latest event time already in the predictions table, i.e. the first day with unscored
rows; with no predictions yet, the day of the latest spine row (a fresh deployment starts at the newest
data; backfills name their day). A partially landed trailing day is therefore scored again, in full, by
the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.core.timing import Timings
from models_ml.definitions.catalog import (
    Catalog,
    FeatureView,
    load_catalog,
)
from models_ml.definitions.pinning import LineageError, pin_view
from models_ml.offline import retrieval
from models_ml.offline.pit import spine_time_bounds
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training.train import Model, feature_matrix

SCHEMA = "predictions"
SCORE = "score"
HAS_MISSING = "has_missing_features"
MISSING_GROUPS = "missing_feature_groups"
_UTC = dt.timezone.utc


class PredictionError(ValueError):
    """A batch-inference request that must be refused; the message names what is missing and how to fix it."""


# --------------------------------------------------------------------------------------------------
# Windows, tables, timings




def table_name(model_name: str, alias: str = registry.CHAMPION) -> str:
    """``predictions.<model>`` for the champion, ``predictions.<model>__<alias>`` otherwise (quoted)."""
    alias = str(alias)
    name = model_name if alias == registry.CHAMPION else f"{model_name}__{re.sub(r'[^0-9A-Za-z_]', '_', alias)}"
    return f'{SCHEMA}."{name}"'


def _stage(timings: Timings | None, name: str) -> contextlib.AbstractContextManager[None]:
    return timings.stage(name) if timings is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# The view the model was trained on, checked against the catalog and the warehouse




def check_built(con: ibis.BaseBackend, view: FeatureView, version: registry.ModelVersion) -> None:
    """Refuse (PredictionError) when a pinned feature group or the label model is not built in the warehouse."""
    rows = con.con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    built = {(schema, name) for schema, name in rows}
    for ref in view.features:
        group = ref.group
        if (group.schema, group.relation) not in built:
            raise PredictionError(
                f"feature group {group.name} v{group.version}, which model {version.model_name} v{version.version} "
                f"was trained on, is not built in the warehouse (no table {group.qualified_relation}): "
                f"run the feature pipeline (`fti features run` or `dbt build --select {group.name}`) first"
            )
    label = view.label
    if (label.schema, label.relation) not in built:
        raise PredictionError(f"label model {label.model} is not built (no table {label.qualified_relation}): "
                              f"run the feature pipeline first")


def inference_view(con: ibis.BaseBackend, catalog: Catalog, version: registry.ModelVersion) -> FeatureView:
    """:func:`pin_view` then :func:`check_built`: the view to score with, or a clear refusal."""
    try:
        view = pin_view(catalog, version)
    except LineageError as error:
        raise PredictionError(str(error)) from error
    check_built(con, view, version)
    return view


# --------------------------------------------------------------------------------------------------
# Features


def load_features(
    con: ibis.BaseBackend, view: FeatureView, window: TimeRange, features: Sequence[str] | None = None
) -> pa.Table:
    """:func:`features_expr` executed: the engine is left once, into Arrow (after one small query for the
    spine's time bounds and size, which also checks that every spine row came out exactly once)."""
    bounds = spine_time_bounds(retrieval.inference_spine(con, view, window), view.label.spine_time)
    table = retrieval.features_expr(con, view, window, features, bounds).to_pyarrow()
    try:
        retrieval.check_joined_rows(view, bounds, table.num_rows)
    except ValueError as error:
        raise PredictionError(str(error)) from error
    return table


def missing_groups(features: pa.Table, view: FeatureView) -> tuple[pa.ListArray, np.ndarray]:
    """Per row, the names of the groups with no row in TTL (a list, empty when none) and whether any."""
    labels = view.group_labels
    n = features.num_rows
    if not labels:
        empty = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()))
        return empty, np.zeros(n, bool)
    found = np.column_stack([
        pc.is_valid(features[retrieval.found_column(i)]).to_numpy(zero_copy_only=False) for i in range(len(labels))
    ]) if n else np.ones((0, len(labels)), bool)
    missing = ~found
    counts = missing.sum(axis=1)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    _, columns = np.nonzero(missing)  # row-major: each row's groups in view order
    values = pa.array(labels, pa.string()).take(pa.array(columns, pa.int32()))
    return pa.ListArray.from_arrays(pa.array(offsets), values), counts > 0


# --------------------------------------------------------------------------------------------------
# Scoring


def default_threads() -> int:
    """Prediction threads: every core (rows are independent, so the scores do not depend on it)."""
    return max(1, os.cpu_count() or 1)


SCORE_CHUNK_ROWS = 65_536


def score(model: Model, features: pa.Table, *, num_threads: int | None = None,
          timings: Timings | None = None) -> np.ndarray:
    """Positive-class probabilities: exactly :meth:`Model.predict` (same encoder, same trees), with a thread count.

    Scored ``SCORE_CHUNK_ROWS`` rows at a time, each encoded into one reused matrix (20 MB for 40
    features), rather than encoding every row at once: on this project's VM, first touching a fresh third of
    a gigabyte (a million rows) cost as much as the trees. Rows are scored independently, so chunking
    changes no score."""
    n = features.num_rows
    scores = np.empty(n, dtype=np.float64)
    if n == 0:
        return scores
    threads = num_threads or default_threads()
    buffer = np.empty((min(n, SCORE_CHUNK_ROWS), len(model.spec.features)), dtype=np.float64)
    for start in range(0, n, SCORE_CHUNK_ROWS):
        with _stage(timings, "prepare_features"):
            matrix = feature_matrix(features.slice(start, SCORE_CHUNK_ROWS), model.spec, out=buffer)
        with _stage(timings, "predict"):
            scores[start:start + len(matrix)] = model.predict_matrix(matrix, threads)
    return scores


def assemble(
    features: pa.Table, scores: np.ndarray, view: FeatureView, version: registry.ModelVersion,
    scored_at: dt.datetime,
) -> pa.Table:
    """The predictions rows, in the table's column order (see the module docstring)."""
    label = view.label
    n = features.num_rows
    if len(scores) != n:
        raise ValueError(f"{len(scores)} scores for {n} rows")
    listed, flagged = missing_groups(features, view)
    columns: dict[str, Any] = {key: features[key] for key in label.entity}
    columns[label.spine_time] = features[label.spine_time]
    columns[label.event_time] = features[label.event_time]
    columns[SCORE] = pa.array(np.asarray(scores, dtype=np.float64))
    columns[HAS_MISSING] = pa.array(flagged, pa.bool_())
    columns[MISSING_GROUPS] = listed
    columns["model_name"] = pa.repeat(pa.scalar(version.model_name, pa.string()), n)
    columns["model_version"] = pa.repeat(pa.scalar(version.version, pa.int32()), n)
    columns["feature_view_version"] = pa.repeat(pa.scalar(version.feature_view_version, pa.int32()), n)
    columns["scored_at"] = pa.repeat(pa.scalar(scored_at.astimezone(_UTC), pa.timestamp("us", tz="UTC")), n)
    return pa.table(columns)


# --------------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class WriteResult:
    table: str
    deleted: int
    inserted: int


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str] | None:
    schema, name = table.split(".", 1)
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema.strip('"'), name.strip('"')],
    ).fetchall()
    return [r[0] for r in rows] or None


def _insert(con: duckdb.DuckDBPyConnection, table: str, source: str) -> None:
    """The insert step of the replace (its own function so a test can make it fail half-way)."""
    con.execute(f"insert into {table} by name select * from {source}")


def write_predictions(
    con: duckdb.DuckDBPyConnection, table: str, predictions: pa.Table, view: FeatureView, window: TimeRange
) -> WriteResult:
    """Replace the window's rows of ``table`` by ``predictions`` in one transaction (see the module docstring).

    Every row of ``predictions`` must lie in the window on the label's event time (the spine guarantees it).
    """
    label = view.label
    source = f"__fti_new_predictions_{uuid.uuid4().hex[:12]}"
    con.register(source, predictions)
    try:
        existing = _existing_columns(con, table)
        if existing is not None and sorted(existing) != sorted(predictions.column_names):
            raise PredictionError(
                f"{table} has columns {existing}, but this run writes {predictions.column_names}: the model's "
                f"entity keys or times changed; rename or drop the old table"
            )
        event = _ident(label.event_time)
        con.execute("begin transaction")
        try:
            con.execute(f"create schema if not exists {SCHEMA}")
            con.execute(f"create table if not exists {table} as select * from {source} limit 0")
            deleted = con.execute(f"delete from {table} where {event} >= ? and {event} < ?",
                                  [window.start, window.end]).fetchone()[0]
            if predictions.num_rows:
                # Rows outside the window of the entities being written (their event time moved). Probing
                # with those rows only, not the whole table, halves the cost of this step.
                keys = ", ".join(_ident(k) for k in label.entity)
                match = " and ".join(f"o.{_ident(k)} = {source}.{_ident(k)}" for k in label.entity)
                outside = f"{event} is null or {event} < ? or {event} >= ?"
                deleted += con.execute(
                    f"delete from {table} where rowid in (select o.rowid from (select rowid, {keys} from {table} "
                    f"where {outside}) o semi join {source} on {match})", [window.start, window.end],
                ).fetchone()[0]
            _insert(con, table, source)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.unregister(source)
    return WriteResult(table, int(deleted), predictions.num_rows)


# --------------------------------------------------------------------------------------------------
# Choosing the day


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return _existing_columns(con, table) is not None


def _day(value: dt.datetime) -> dt.date:
    return value.astimezone(_UTC).date()


def default_day(con: ibis.BaseBackend, view: FeatureView, table: str) -> dt.date | None:
    """The first UTC day with unscored spine rows (see the module docstring); None when the spine is empty."""
    label = view.label
    raw = con.con
    event = _ident(label.event_time)
    spine = f"{_ident(label.schema)}.{_ident(label.relation)}"
    latest = raw.execute(f"select max({event}) from {table}").fetchone()[0] if _table_exists(raw, table) else None
    if latest is None:
        newest = raw.execute(f"select max({event}) from {spine}").fetchone()[0]
        return _day(newest) if newest is not None else None
    following = raw.execute(f"select min({event}) from {spine} where {event} > ?", [latest]).fetchone()[0]
    return _day(following) if following is not None else _day(latest) + dt.timedelta(days=1)


# --------------------------------------------------------------------------------------------------
# One run, composed


@dataclass(frozen=True)
class PredictionRun:
    """What a run did: enough for a log line, a flow artifact and the benchmark."""

    model_name: str
    model_version: int
    alias: str
    feature_view: str
    feature_view_version: int
    table: str
    window: TimeRange
    rows: int
    flagged_rows: int
    missing_by_group: dict[str, int]
    mean_score: float | None
    deleted: int
    scored_at: dt.datetime
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["window"] = [self.window.start.isoformat(), self.window.end.isoformat()]
        data["scored_at"] = self.scored_at.isoformat()
        return data

    def as_markdown(self) -> str:
        mean = "-" if self.mean_score is None else f"{self.mean_score:.4f}"
        lines = [
            f"# Batch inference: {self.model_name} v{self.model_version} ({self.alias})",
            "",
            "| | |", "|---|---|",
            f"| window (UTC, on event time) | [{self.window.start:%Y-%m-%d %H:%M}, {self.window.end:%Y-%m-%d %H:%M}) |",
            f"| rows scored | {self.rows:,} |",
            f"| rows flagged (a feature group missing) | {self.flagged_rows:,} |",
            f"| mean score | {mean} |",
            f"| model version | {self.model_name} v{self.model_version} |",
            f"| feature view | {self.feature_view} v{self.feature_view_version} |",
            f"| table | `{self.table}` ({self.deleted:,} previous rows replaced) |",
            f"| scored at | {self.scored_at:%Y-%m-%d %H:%M:%S} UTC |",
        ]
        if self.missing_by_group:
            lines += ["", "| feature group | rows without a row in TTL |", "|---|---|"]
            lines += [f"| {g} | {n:,} |" for g, n in self.missing_by_group.items()]
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())]
        return "\n".join(lines)


def summarize(
    predictions: pa.Table, view: FeatureView, version: registry.ModelVersion, alias: str, window: TimeRange,
    written: WriteResult, scored_at: dt.datetime, seconds: dict[str, float],
) -> PredictionRun:
    missing = predictions[MISSING_GROUPS]
    counts: dict[str, int] = {}
    if predictions.num_rows and pc.sum(pc.list_value_length(missing)).as_py():
        flat = pc.value_counts(pc.list_flatten(missing))
        counts = dict(zip(flat.field("values").to_pylist(), flat.field("counts").to_pylist()))
    mean = pc.mean(predictions[SCORE]).as_py() if predictions.num_rows else None
    return PredictionRun(
        model_name=version.model_name, model_version=version.version, alias=str(alias),
        feature_view=version.feature_view, feature_view_version=version.feature_view_version, table=written.table,
        window=window, rows=predictions.num_rows, flagged_rows=int(pc.sum(predictions[HAS_MISSING]).as_py() or 0),
        missing_by_group={g: counts[g] for g in view.group_labels if g in counts}, mean_score=mean,
        deleted=written.deleted, scored_at=scored_at, seconds={k: round(v, 4) for k, v in seconds.items()},
    )


def predict_window(
    settings: Settings,
    model_name: str,
    window: TimeRange,
    *,
    alias: str = registry.CHAMPION,
    catalog: Catalog | None = None,
    num_threads: int | None = None,
    scored_at: dt.datetime | None = None,
) -> PredictionRun:
    """Score every spine row of ``window`` with ``model_name``'s ``alias`` and replace the window's predictions.

    The same steps as the batch-inference flow, in one call (for scripts, tests and the benchmark).
    """
    timings = Timings()
    with timings.stage("resolve_model"):
        version, model = registry.load(settings, model_name, alias)
        catalog = catalog if catalog is not None else load_catalog(settings)
    scored_at = scored_at or dt.datetime.now(_UTC)
    con = sn.connect(settings)
    try:
        with timings.stage("check_lineage"):
            view = inference_view(con, catalog, version)
        with timings.stage("features"):
            features = load_features(con, view, window, model.spec.features)
        scores = score(model, features, num_threads=num_threads, timings=timings)
        with timings.stage("assemble"):
            predictions = assemble(features, scores, view, version, scored_at)
        with timings.stage("write"):
            written = write_predictions(con.con, table_name(model_name, alias), predictions, view, window)
    finally:
        con.disconnect()
    return summarize(predictions, view, version, alias, window, written, scored_at, timings.seconds)
