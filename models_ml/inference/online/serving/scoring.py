"""A served champion, loaded once from its pointer and swapped whole, and how it answers requests.

**Request path** (:meth:`ServedModel.score`): one store lookup (one SQLite read transaction or one Redis
round trip), the model's input rows (:func:`models_ml.inference.online.on_demand.feature_rows`: request
features, stored features, on-demand features, the same rows the skew tests compare with the snapshot's),
the scores (:mod:`.encode`), and per feature group the event time and age of the row used. It runs on the
event loop without a thread hop: the work is a little CPU, which a thread pool could not parallelize under
the GIL and would only delay.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from models_ml.definitions.catalog import FeatureView
from models_ml.inference.online.on_demand import feature_rows
from models_ml.inference.online.serving.encode import Scorer
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.schema import batch_model, request_model
from models_ml.inference.online.store import UTC, OnlineStore
from models_ml.training.champion_pointer import Pointer
from models_ml.training.train import Model, load_model


@dataclass(frozen=True)
class Scored:
    """The answers to some requests, and the model input rows behind them (for the prediction log)."""

    responses: list[dict[str, Any]]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class ServedModel:
    """One loaded champion: immutable, swapped whole when a new one is published."""

    name: str
    version: int
    pointer: Pointer
    model: Model
    scorer: Scorer
    view: FeatureView
    request_type: type[pydantic.BaseModel]
    batch_type: pydantic.TypeAdapter
    field_names: frozenset[str]  # the request fields: any other key is refused before validation
    group_labels: tuple[str, ...]
    pointer_stamp: tuple[int, int]  # (mtime_ns, size) of the pointer file it was loaded from
    loaded_at: dt.datetime

    @classmethod
    def load(cls, pointer: Pointer, stamp: tuple[int, int]) -> ServedModel:
        model = load_model(pointer.model_dir)
        view = pointer.view
        unknown = [f for f in model.spec.features if f not in set(view.feature_columns)]
        if unknown:
            raise ValueError(f"model {pointer.model_name} v{pointer.version} needs features {unknown} that its "
                             f"feature view does not produce")
        request_type = request_model(pointer.model_name, pointer.fields)
        return cls(
            name=pointer.model_name, version=pointer.version, pointer=pointer, model=model, scorer=Scorer(model),
            view=view, request_type=request_type, batch_type=batch_model(request_type),
            field_names=frozenset(f.name for f in pointer.fields),
            group_labels=tuple(view.group_labels), pointer_stamp=stamp, loaded_at=dt.datetime.now(UTC),
        )

    def score(self, store: OnlineStore, items: Sequence[Mapping[str, Any]], received_at: dt.datetime,
              metrics: Metrics) -> Scored:
        """Look up, assemble the feature rows, score; one response per item. Features are looked up as of
        each item's spine time (e.g. ``prediction_at``) when it carries one, else as of ``received_at``."""
        view = self.view
        spine_time = view.label.spine_time
        as_of = [item.get(spine_time) or received_at for item in items]
        found = store.lookup(view, items, as_of)
        rows = feature_rows(view, items, found.features)
        scores = self.scorer.predict(rows)
        responses = []
        for i in range(len(items)):
            freshness: dict[str, Any] = {}
            missing = []
            for label, match in zip(self.group_labels, found.matches[i]):
                if match.found:
                    freshness[label] = {"event_at": match.event_at.isoformat(), "age_seconds": match.age_seconds}
                    metrics.child(metrics.feature_age, match.group).observe(max(match.age_seconds, 0.0))
                else:
                    freshness[label] = None
                    missing.append(label)
                    metrics.child(metrics.features_missing, match.group).inc()
            responses.append({
                "model": self.name, "version": self.version, "score": float(scores[i]),
                "prediction_id": uuid.uuid4().hex, "as_of": as_of[i].isoformat(),
                "missing_groups": missing, "freshness": freshness,
            })
        return Scored(responses, rows)
