"""The current data of a model version: what it scored in batch, with the inputs it scored, per window.

A predictions table (``predictions.<model>``, see :mod:`models_ml.inference.batch.predict`) keeps the
entity keys, times and score of each row but not the inputs, which would double its size. The inputs are
the batch run's own point-in-time join (:func:`models_ml.offline.retrieval.features_expr`, over the model's
pinned view), run again over the same window and joined to the version's rows on the entity keys. The
join reads only feature rows at or before each row's spine time, so it gives what the run saw, unless a
feature group was corrected in between (then it gives the corrected values, which is what drift should be
measured on anyway).

Windows are calendar days (of a time zone, UTC by default) on the label's event time, the unit batch
inference writes in; each row is labelled with its window's bounds in the engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from models_ml.core.time import TimeRange, day_window, time_zone
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.batch.predict import SCORE, predictions_relation
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.offline.pit import spine_time_bounds
from models_ml.offline.retrieval import features_expr, inference_spine, utc_literal
from models_ml.offline.store import OfflineStore
from models_ml.training import registry

SOURCE_BATCH = "batch"
WINDOW_START, WINDOW_END = "window_start", "window_end"


def batch_relation(store: OfflineStore, version: registry.ModelVersion) -> tuple[str, str] | None:
    """The predictions table holding the version's batch scores: the champion's table, else the
    challenger's, else the one for the version by number (``predictions.<model>__<version>``); None when
    no table has a row of it."""
    for alias in (registry.CHAMPION, registry.CHALLENGER, str(version.version)):
        relation = predictions_relation(version.model_name, alias)
        if store.exists(*relation) and version_rows(store, relation, version).count().to_pyarrow().as_py():
            return relation
    return None


def version_rows(store: OfflineStore, relation: tuple[str, str], version: registry.ModelVersion,
                 view: FeatureView | None = None, span: TimeRange | None = None) -> ir.Table:
    """The rows of a predictions table the version scored (with ``view`` and ``span``: whose event time
    lies in the span)."""
    table = store.table(*relation)
    table = table.filter(table.model_version == version.version)
    if span is not None and view is not None:
        at = table[view.label.event_time]
        table = table.filter(at >= utc_literal(span.start), at < utc_literal(span.end))
    return table


def window_labels(at: ir.TimestampValue, windows: Sequence[TimeRange]) -> dict[str, ir.Value]:
    """The bounds of the window (of consecutive, ascending ``windows``) each ``at`` lies in, as the
    columns :data:`WINDOW_START` and :data:`WINDOW_END` (rows outside every window must be filtered out
    before)."""
    return {WINDOW_START: ibis.cases(*((at < utc_literal(w.end), utc_literal(w.start)) for w in windows)),
            WINDOW_END: ibis.cases(*((at < utc_literal(w.end), utc_literal(w.end)) for w in windows))}


def scored_days(store: OfflineStore, relation: tuple[str, str], view: FeatureView, version: registry.ModelVersion,
                zone: str = "UTC") -> tuple[dt.date, dt.date] | None:
    """The first and last day (in ``zone``) on which the version scored a row of ``relation``."""
    table = version_rows(store, relation, version)
    event = table[view.label.event_time]
    row = store.to_arrow(table.aggregate(first=event.min(), last=event.max())).to_pylist()[0]
    if row["first"] is None:
        return None
    tz = time_zone(zone)
    return row["first"].astimezone(tz).date(), row["last"].astimezone(tz).date()


def day_windows(first: dt.date, last: dt.date, zone: str = "UTC") -> list[TimeRange]:
    """One window per calendar day of ``zone`` from ``first`` through ``last`` (inclusive)."""
    if last < first:
        raise ValueError(f"the last day {last} is before the first day {first}")
    return [day_window(first + dt.timedelta(days=i), 1, zone) for i in range((last - first).days + 1)]


def current_expr(store: OfflineStore, view: FeatureView, relation: tuple[str, str], version: registry.ModelVersion,
                 windows: Sequence[TimeRange]) -> ir.Table:
    """The version's scored rows in ``windows`` (consecutive, ascending): the window's bounds, the model's
    inputs as of each row's spine time, and the score (:data:`SCORE_FEATURE`)."""
    label = view.label
    span = TimeRange(windows[0].start, windows[-1].end)
    scored = version_rows(store, relation, version, view, span)
    scored = scored.select(*label.entity, **{SCORE_FEATURE: scored[SCORE]})
    bounds = spine_time_bounds(inference_spine(store, view, span), label.spine_time)
    inputs = features_expr(store, view, span, version.features, bounds)
    joined = inputs.inner_join(scored, list(label.entity))
    return joined.select(**window_labels(joined[label.event_time], windows), **{
        name: joined[name] for name in [*version.features, SCORE_FEATURE]})
