"""Predictions joined to outcomes once they are known: how a batch-scored window did, day by day.

Batch inference scores the inference spine before the outcome exists; the label model's row for the same
entity arrives later. This joins a predictions table to the label model on the entity keys (in the engine)
and measures, per UTC day of the event time, how many rows were scored, how many have an outcome yet, the
mean score against the actual rate, and the ROC-AUC of the scores on the rows with an outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import ibis.expr.types as ir

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.time import time_zone
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.batch.predict import SCORE
from models_ml.offline.store import OfflineStore
from models_ml.training.evaluate import roc_auc


def join_outcomes(store: OfflineStore, view: FeatureView, scored: ir.Table,
                  columns: Callable[[ir.Table], dict[str, ir.Value]]) -> ir.Table:
    """``scored`` (rows carrying the label's entity keys) left-joined to the label model's row of the same
    entity, bringing ``columns(label table)``: NULL where the outcome has not arrived. The one place that
    says how a prediction finds its outcome."""
    label = view.label
    outcomes = store.table(label.schema, label.relation)
    outcomes = outcomes.select(*label.entity, **columns(outcomes))
    return scored.left_join(outcomes, list(label.entity))


@dataclass(frozen=True)
class DayOutcome:
    """One UTC day of predictions and what came of them (``roc_auc`` None until both classes are known)."""

    day: dt.date
    scored: int
    with_outcome: int
    mean_score: float
    actual_rate: float | None
    roc_auc: float | None


def daily_outcomes(store: OfflineStore, view: FeatureView, predictions: tuple[str, str],
                   zone: str = "UTC") -> list[DayOutcome]:
    """Every predicted day (a calendar day of ``zone``) of the ``(schema, name)`` predictions table, joined
    to the view's label model."""
    label = view.label
    scored = store.table(*predictions).select(*label.entity, label.event_time, SCORE)
    joined = join_outcomes(store, view, scored, lambda outcomes: {"__fti_target": outcomes[label.target]})
    joined = joined.select(at=joined[label.event_time], score=joined[SCORE], target=joined["__fti_target"])
    table = store.to_arrow(joined.order_by("at"))
    at = table["at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz=str(time_zone(zone))))
    days = pc.local_timestamp(at).cast(pa.date32()).to_numpy(zero_copy_only=False)
    scores = table["score"].to_numpy()
    target = table["target"]
    known_all = pc.is_valid(target).to_numpy(zero_copy_only=False)
    y_all = pc.fill_null(target.cast(pa.float64()), 0.0).to_numpy()
    # rows come ordered by time, so each day is one contiguous run of rows
    starts = [int(i) for i in np.flatnonzero(days[1:] != days[:-1]) + 1]
    bounds = [0, *starts, len(days)] if len(days) else []
    result = []
    for start, end in zip(bounds, bounds[1:]):
        known = known_all[start:end]
        y, day_scores = y_all[start:end][known], scores[start:end]
        auc = roc_auc(y, day_scores[known])  # None until both classes are known
        result.append(DayOutcome(day=days[start].item(), scored=end - start, with_outcome=int(known.sum()),
                                 mean_score=float(day_scores.mean()),
                                 actual_rate=float(y.mean()) if len(y) else None, roc_auc=auc))
    return result
