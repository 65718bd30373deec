"""A served champion, loaded once from its pointer and swapped whole, and how it answers requests.

**Request path** (:meth:`ServedModel.score`): one store lookup (one SQLite read transaction or one Redis
round trip), the model's input rows (:func:`models_ml.inference.online.on_demand.feature_rows`: request
features, stored features, on-demand features, the same rows the skew tests compare with the snapshot's),
the scores (:mod:`.encode`), and per feature group the event time and age of the row used. Each answer
names the model version that scored it (``version``) and the group versions its features were read from
(``feature_groups``, ``name:vN``, the ids the lookup read): both come from the one served model the request
holds, whose view is pinned to the versions that model was trained on, so no answer mixes a model with
another version's features, even while a promotion swaps the model. It runs on the
event loop without a thread hop: the work is a little CPU, which a thread pool could not parallelize under
the GIL and would only delay.

**Time warnings**: an answer lists in ``warnings`` (and counts in ``fti_online_warnings``) what makes its
features unlike the training snapshot's at the same time: a row used whose event time is after ``as_of``
(``features_from_future``: the store keeps only each entity's latest row, so a request dated in the past
gets later values, which the point-in-time join would never give), and a group missing because the store's
newest row of it is older than its TTL at ``as_of`` (``store_older_than_ttl``: not this entity's absence,
which training sees too, but a store that does not reach the request's time, so every entity misses it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from models_ml.definitions.catalog import FeatureView
from models_ml.inference.online.on_demand import feature_rows
from models_ml.inference.online.prediction_log import new_prediction_id
from models_ml.inference.online.serving.encode import Scorer
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.schema import batch_model, request_model
from models_ml.inference.online.store import UTC, GroupMatch, OnlineStore
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
    group_ttls: tuple[float | None, ...]  # seconds, per feature selection (None: no TTL)
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
        request_type = request_model(pointer.model_name, pointer.fields, view.label.request_bounds)
        return cls(
            name=pointer.model_name, version=pointer.version, pointer=pointer, model=model, scorer=Scorer(model),
            view=view, request_type=request_type, batch_type=batch_model(request_type),
            field_names=frozenset(f.name for f in pointer.fields),
            group_labels=tuple(view.group_labels),
            group_ttls=tuple(ref.group.ttl.total_seconds() if ref.group.ttl else None for ref in view.features),
            pointer_stamp=stamp, loaded_at=dt.datetime.now(UTC),
        )

    def score(self, store: OnlineStore, items: Sequence[Mapping[str, Any]], received_at: dt.datetime,
              metrics: Metrics | None, newest_events: Mapping[str, dt.datetime] | None = None,
              variant: str = "champion") -> Scored:
        """Look up, assemble the feature rows, score; one response per item. Features are looked up as of
        each item's spine time (e.g. ``prediction_at``) when it carries one, else as of ``received_at``.
        ``newest_events``: the store's newest event time per group id (:class:`NewestEvents`), for the
        ``store_older_than_ttl`` warning (none without it). ``metrics`` None: nothing counted (the shadow
        scorer, whose scores are never answered, counts its own); ``variant`` is named in each answer."""
        view = self.view
        spine_time = view.label.spine_time
        as_of = [item.get(spine_time) or received_at for item in items]
        found = store.lookup(view, items, as_of)
        rows = feature_rows(view, items, found.features)
        scores = self.scorer.predict(rows)
        newest = newest_events or {}
        responses = []
        for i in range(len(items)):
            freshness: dict[str, Any] = {}
            missing = []
            warnings: list[dict[str, Any]] = []
            for label, ttl, match in zip(self.group_labels, self.group_ttls, found.matches[i]):
                if match.found:
                    freshness[label] = {"event_at": match.event_at.isoformat(), "age_seconds": match.age_seconds}
                    if metrics is not None:
                        metrics.child(metrics.feature_age, match.group).observe(max(match.age_seconds, 0.0))
                    if match.age_seconds < 0:
                        warnings.append(_future_warning(label, match))
                        if metrics is not None:
                            metrics.child(metrics.warnings, self.name, match.group, FUTURE).inc()
                else:
                    freshness[label] = None
                    missing.append(label)
                    if metrics is not None:
                        metrics.child(metrics.features_missing, match.group).inc()
                    latest = newest.get(match.group)
                    if ttl is not None and latest is not None and (as_of[i] - latest).total_seconds() > ttl:
                        warnings.append(_stale_warning(label, latest, ttl))
                        if metrics is not None:
                            metrics.child(metrics.warnings, self.name, match.group, STALE).inc()
            responses.append({
                "model": self.name, "version": self.version, "variant": variant, "score": float(scores[i]),
                "prediction_id": new_prediction_id(), "as_of": as_of[i].isoformat(),
                "feature_groups": [match.group for match in found.matches[i]],
                "missing_groups": missing, "freshness": freshness, "warnings": warnings,
            })
        return Scored(responses, rows)


FUTURE, STALE = "features_from_future", "store_older_than_ttl"


def _span(seconds: float) -> str:
    """A duration in words, to one decimal of its largest unit: '330.2 days', '5.5 hours', '40 seconds'."""
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:g} seconds"


def _future_warning(label: str, match: GroupMatch) -> dict[str, Any]:
    return {"code": FUTURE, "group": label, "event_at": match.event_at.isoformat(),
            "message": f"{label}: the row used is from {match.event_at.isoformat()}, {_span(-match.age_seconds)} "
                       f"after as_of; the online store keeps only each entity's latest row, so an earlier "
                       f"prediction_at gets later features (score history with batch inference)"}


def _stale_warning(label: str, latest: dt.datetime, ttl_seconds: float) -> dict[str, Any]:
    return {"code": STALE, "group": label, "event_at": latest.isoformat(),
            "message": f"{label}: the store's newest row is from {latest.isoformat()}, older than the group's "
                       f"TTL ({_span(ttl_seconds)}) at as_of, so every entity misses these features; "
                       f"materialize the store, or send a prediction_at within its data"}


class NewestEvents:
    """The newest event time per group id, from the store's freshness records as the service keeps them
    (``Freshness.as_dict``, ISO strings). The service replaces that mapping on each refresh and never changes
    it, so the last one parsed is kept and recognized by identity: a request pays nothing in between."""

    def __init__(self) -> None:
        self._source: Mapping[str, Any] | None = None
        self._parsed: dict[str, dt.datetime] = {}

    def of(self, freshness: Mapping[str, Any]) -> dict[str, dt.datetime]:
        if freshness is not self._source:
            parsed = {}
            for group, record in freshness.items():
                latest = record.get("latest_event_at") if isinstance(record, Mapping) else None
                if latest:
                    parsed[group] = dt.datetime.fromisoformat(latest)
            self._source, self._parsed = freshness, parsed
        return self._parsed


def prediction_records(served: ServedModel, variant: str, items: Sequence[Mapping[str, Any]], scored: Scored,
                       received_at: dt.datetime, latency_ms: float,
                       shadow_of: Sequence[str] | None = None) -> list[tuple[Any, ...]]:
    """The prediction log's records of ``scored`` (see
    :data:`models_ml.inference.online.prediction_log.COLUMNS`), one per item."""
    entity = served.view.label.entity
    records = []
    for i, (item, result, row) in enumerate(zip(items, scored.responses, scored.rows)):
        ages = {label: (f["age_seconds"] if f else None) for label, f in result["freshness"].items()}
        records.append((
            result["prediction_id"], received_at, served.name, served.version,
            dt.datetime.fromisoformat(result["as_of"]), {k: item.get(k) for k in entity}, result["score"],
            result["missing_groups"], ages, row, dict(item), latency_ms, variant,
            shadow_of[i] if shadow_of is not None else None,
        ))
    return records
