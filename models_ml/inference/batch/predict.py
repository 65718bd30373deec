"""Batch inference: score the entities of a time window with a registered model, into a predictions table.

Functions over an open :class:`~models_ml.offline.store.OfflineStore`; the run's steps and their one
composition are in :mod:`models_ml.inference.batch.pipeline`, which the Prefect flow wraps. One run, step by
step:

* **Window**: ``[start, end)``, UTC, half-open, on the label's *event time* (``label.event_time`` of the
  feature view; for flight_delay ``scheduled_departure_at``): a day of predictions is the flights
  *scheduled* that UTC day. :func:`models_ml.core.time.day_window` turns ``(day, days)`` into the window.
* **Spine**: what is to be scored, known *before* the outcome: the view's ``inference_spine`` model (for
  flight_delay ``spine_flight__scheduled``, the published schedule, landed the day before the flights fly),
  through the training spine's own function (:func:`models_ml.offline.retrieval.spine_expr`), selecting by
  event time and without a target. A view without an inference spine scores its label model, which holds
  only entities whose outcome is already known (a re-score of the past). Every row keeps its spine time
  (``prediction_at``), which is the as-of time of the features: a flight scored tonight for tomorrow gets
  the features known as of two hours before its departure that exist by tonight (the point-in-time join
  never reads later rows; a group with nothing within its TTL yet is flagged missing, see below).
* **Empty window**: a window with no spine row fails (:class:`EmptyWindow`, naming the spine, the window
  and the range the spine does hold); the CLI exits non-zero. Nothing is written, the previous predictions
  stay.
* **Features**: the training snapshot's own point-in-time join (:func:`models_ml.offline.retrieval.join_features`
  over :func:`models_ml.offline.retrieval.feature_sources`), so training and inference cannot skew. Each source
  also outputs the matched row's event time under an internal name (``matched_event_time``). It is NULL
  exactly when the group had no row within its TTL, which is how missing groups are detected; it is an
  output of the join, not an input, so it cannot change which row the join picks.
* **Model**: the version behind the alias (``champion`` by default) is resolved in the registry. Its
  lineage names the feature view and the feature group versions it was trained on; the view is taken from
  the catalog with each group pinned at that version (a newer v2 of a group does not leak into a model
  trained on v1). The run is refused with :class:`PredictionError`, naming the group and version, when a
  trained-on group version is not in the catalog (the dbt project), is not built in the warehouse, or
  lacks a feature the model needs.
* **Scoring**: :func:`models_ml.training.train.feature_matrix` (the encoder training uses, as a float
  matrix), then LightGBM, a chunk of rows at a time.

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

**Idempotent write**: :meth:`~models_ml.offline.store.OfflineStore.replace_window`, in one transaction:
delete the table's rows whose event time lies in the window (whatever version wrote them) and any row of
an entity being written (so an entity whose event time moved is not left twice), then insert the new rows
from Arrow. Re-running a window replaces it and never duplicates; a failure before commit (or a killed
process) rolls back to the previous rows.

**Default day** (:func:`default_day`, used when no day is given): the UTC day of the earliest spine row
later than the latest event time already in the predictions table, i.e. the first day with unscored
rows; with no predictions yet, the day of the latest spine row (a fresh deployment starts at the newest
data; backfills name their day). A partially landed trailing day is therefore scored again, in full, by
the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.time import TimeRange, time_zone
from models_ml.core.timing import Timings
from models_ml.definitions.catalog import Catalog, FeatureView
from models_ml.definitions.pinning import LineageError, pin_view
from models_ml.offline import retrieval
from models_ml.offline.external import ExternalGroupError, mount_all
from models_ml.offline.store import OfflineStore, OfflineStoreError, WindowReplaced
from models_ml.training import registry
from models_ml.training.train import Model, feature_matrix

SCHEMA = "predictions"
SCORE = "score"
HAS_MISSING = "has_missing_features"
MISSING_GROUPS = "missing_feature_groups"
_UTC = dt.timezone.utc


class PredictionError(ValueError):
    """A batch-inference request that must be refused; the message names what is missing and how to fix it."""


class EmptyWindow(PredictionError):
    """The window has nothing to score: a run that scored nothing is a failure, not a silent success."""


# --------------------------------------------------------------------------------------------------
# Tables, timings


def predictions_relation(model_name: str, alias: str = registry.CHAMPION) -> tuple[str, str]:
    """(schema, name) of the predictions table: ``<model>`` for the champion, ``<model>__<alias>`` otherwise."""
    alias = str(alias)
    name = model_name if alias == registry.CHAMPION else f"{model_name}__{re.sub(r'[^0-9A-Za-z_]', '_', alias)}"
    return SCHEMA, name


def table_name(model_name: str, alias: str = registry.CHAMPION) -> str:
    """:func:`predictions_relation` as a quoted SQL name, ``predictions."<model>"``."""
    schema, name = predictions_relation(model_name, alias)
    return f'{schema}."{name}"'


def _stage(timings: Timings | None, name: str) -> contextlib.AbstractContextManager[None]:
    return timings.stage(name) if timings is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# The view the model was trained on, checked against the catalog and the warehouse


def check_built(store: OfflineStore, view: FeatureView, version: registry.ModelVersion) -> None:
    """Refuse (PredictionError) when a pinned feature group or the label model is not built in the warehouse
    (or an external group's upstream cannot be read as declared)."""
    try:
        mount_all(store, [ref.group for ref in view.features])
    except ExternalGroupError as error:
        raise PredictionError(str(error)) from error
    built = store.relations()
    for ref in view.features:
        group = ref.group
        if (group.schema, group.relation) not in built:
            raise PredictionError(
                f"feature group {group.name} v{group.version}, which model {version.model_name} v{version.version} "
                f"was trained on, is not built in the warehouse (no table {group.qualified_relation}): "
                f"run the feature pipeline (`fti features run` or `dbt build --select {group.name}`) first"
            )
    spine = view.inference_spine or view.label
    if (spine.schema, spine.relation) not in built:
        what = "inference spine" if view.inference_spine else "label model"
        raise PredictionError(f"{what} {spine.model} of view {view.name} is not built (no table "
                              f"{spine.qualified_relation}): run the feature pipeline first")


def inference_view(store: OfflineStore, catalog: Catalog, version: registry.ModelVersion) -> FeatureView:
    """:func:`pin_view` then :func:`check_built`: the view to score with, or a clear refusal."""
    try:
        view = pin_view(catalog, version)
    except LineageError as error:
        raise PredictionError(str(error)) from error
    check_built(store, view, version)
    return view


# --------------------------------------------------------------------------------------------------
# Features


def load_features(
    store: OfflineStore, view: FeatureView, window: TimeRange, features: Sequence[str] | None = None
) -> pa.Table:
    """:func:`~models_ml.offline.retrieval.features_expr`'s rows in Arrow, by
    :func:`~models_ml.offline.retrieval.features_table` (one source at a time where the store joins fastest
    so); the spine's row count it returns checks that every spine row came out exactly once."""
    try:
        table, bounds = retrieval.features_table(store, view, window, features)
        if not bounds.rows:
            raise EmptyWindow(_empty_window_message(store, view, window))
        retrieval.check_joined_rows(view, bounds, table.num_rows)
    except retrieval.JoinedRowsMismatch as error:
        raise PredictionError(str(error)) from error
    return table


def _empty_window_message(store: OfflineStore, view: FeatureView, window: TimeRange) -> str:
    """Which spine was empty in the window, and what it does hold (its event-time range)."""
    schema, name = view.scoring_relation
    event = view.label.event_time
    table = store.table(schema, name)
    row = table.aggregate(first=table[event].min(), last=table[event].max()).to_pyarrow().to_pylist()[0]
    holds = (f"it holds {row['first']:%Y-%m-%d %H:%M} to {row['last']:%Y-%m-%d %H:%M} UTC"
             if row["first"] is not None else "it is empty")
    return (f"nothing to score: {schema}.{name} has no row with {event} in "
            f"[{window.start:%Y-%m-%d %H:%M}, {window.end:%Y-%m-%d %H:%M}) UTC ({holds}); pick a day in that "
            f"range, or run the feature pipeline to land more")


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
    features), rather than encoding every row at once: first touching a fresh matrix of every row (a third
    of a gigabyte for a million rows) costs about as much as the trees. Rows are scored independently, so
    chunking changes no score."""
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


def write_predictions(store: OfflineStore, relation: tuple[str, str], predictions: pa.Table, view: FeatureView,
                      window: TimeRange) -> WindowReplaced:
    """Replace the window's rows of the ``(schema, name)`` table by ``predictions`` in one transaction (see
    the module docstring). Every row of ``predictions`` must lie in the window on the label's event time
    (the spine guarantees it)."""
    label = view.label
    try:
        return store.replace_window(*relation, predictions, time_column=label.event_time, window=window,
                                    keys=label.entity)
    except OfflineStoreError as error:  # a table written with other columns: the message says what to do
        raise PredictionError(str(error)) from error


# --------------------------------------------------------------------------------------------------
# Choosing the day


def default_day(store: OfflineStore, view: FeatureView, relation: tuple[str, str],
                zone: str = "UTC") -> dt.date | None:
    """The first day (in ``zone``) with unscored spine rows (see the module docstring); None when the spine is
    empty."""
    tz = time_zone(zone)
    _day = lambda value: value.astimezone(tz).date()  # noqa: E731
    event = view.label.event_time
    spine = store.table(*view.scoring_relation)
    latest = store.table(*relation)[event].max().to_pyarrow().as_py() if store.exists(*relation) else None
    if latest is None:
        newest = spine[event].max().to_pyarrow().as_py()
        return _day(newest) if newest is not None else None
    following = spine.filter(spine[event] > retrieval.utc_literal(latest))[event].min().to_pyarrow().as_py()
    return _day(following) if following is not None else _day(latest) + dt.timedelta(days=1)
