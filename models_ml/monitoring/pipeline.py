"""Monitoring runs, composed once.

Drift: resolve the version (and, for batch, its pinned view), build its reference if missing, put the
current rows labelled by window in a scratch table, compute and write the statistics, summarize. Batch
predictions are windowed by day of their event time, the online prediction log by hour of arrival.
Performance: the version's batch predictions joined to the outcomes known so far, per day and slice.
Monitoring (:func:`monitor`, what the flow and ``fti monitor NAME`` run): both over the last days, the
freshness of the groups read, the alerts against the view's thresholds, and the retraining claim.

Held under the home's lock (:func:`models_ml.core.home_lock.hold_home`), like every warehouse write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ibis.expr.types as ir

from models_ml.core.home_lock import hold_home
from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange, day_window, time_zone
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.inference.batch.predict import PredictionError, inference_view
from models_ml.monitoring import online, retrain
from models_ml.monitoring.alerts import Alert, EvaluatedPerformance, evaluate, evaluated_performance, write_alerts
from models_ml.monitoring.config import Thresholds, thresholds
from models_ml.monitoring.current import SOURCE_BATCH, batch_relation, current_expr, day_windows, scored_days
from models_ml.monitoring.drift import BINS, EPSILON, DriftWritten, write_drift
from models_ml.monitoring.freshness import GroupFreshness, check_freshness, write_freshness
from models_ml.monitoring.performance import PerformanceWritten, labelled_expr, write_performance
from models_ml.monitoring.profile import input_kinds
from models_ml.monitoring.reference import MonitoringError, Reference, ensure_reference
from models_ml.monitoring.scores import write_score_distribution
from models_ml.monitoring.summary import FeatureDrift, summarize
from models_ml.monitoring.tables import PERFORMANCE, SCHEMA, ensure_tables
from models_ml.offline.store import OfflineStore, opened
from models_ml.training import registry

_UTC = dt.timezone.utc
SOURCES = (SOURCE_BATCH, online.SOURCE_ONLINE)


@dataclass(frozen=True)
class DriftRun:
    """What :func:`compute_drift` did: the version, where its current rows came from, the windows, the
    reference, the rows written and a per-feature summary."""

    model_name: str
    version: int
    source: str
    origin: str  # the predictions table or the prediction log file
    windows: list[TimeRange]
    reference: Reference
    written: DriftWritten
    features: list[FeatureDrift]


def compute_drift(settings: Settings, model_name: str, ref: str | int = registry.CHAMPION, *,
                  source: str = SOURCE_BATCH, first_day: dt.date | None = None, last_day: dt.date | None = None,
                  zone: str = "UTC", catalog: Catalog | None = None, bins: int = BINS, epsilon: float = EPSILON,
                  rebuild_reference: bool = False) -> DriftRun:
    """Drift of the version behind ``ref`` against its reference, into ``monitoring.feature_drift``: per day
    (of ``zone``) of its batch predictions, or per UTC hour of its online prediction log, from
    ``first_day`` through ``last_day`` (default: every day or hour it has rows in)."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    version, model = registry.load(settings, model_name, ref)
    kinds = input_kinds(model.spec)
    scratch: list[str] = []  # tables of this run, dropped whatever happens
    with hold_home(settings, f"monitor drift {model_name}"), opened(settings) as store:
        try:
            if source == SOURCE_BATCH:
                catalog = catalog if catalog is not None else load_catalog(settings)
                origin, windows, current = _batch(store, catalog, version, first_day, last_day, zone)
            else:
                origin, windows, current = _online(settings, store, version, kinds, first_day, last_day, zone,
                                                   scratch)
            reference = ensure_reference(store, version, model, rebuild=rebuild_reference)
            span = TimeRange(windows[0].start, windows[-1].end)
            scratch.append(_scratch("current"))
            store.create_table(SCHEMA, scratch[-1], current)
            computed_at = dt.datetime.now(_UTC)
            written = write_drift(store, f'{SCHEMA}."{scratch[-1]}"', kinds, model_name=model_name,
                                  version=version.version, source=source, span=span,
                                  computed_at=computed_at, bins=bins, epsilon=epsilon)
            write_score_distribution(store, f'{SCHEMA}."{scratch[-1]}"', model_name=model_name,
                                     version=version.version, source=source, span=span, computed_at=computed_at)
        finally:
            for name in scratch:
                store.drop_table(SCHEMA, name)
        features = summarize(store, model_name, version.version, source, span)
    return DriftRun(model_name, version.version, source, origin, windows, reference, written, features)


def _scratch(what: str) -> str:
    return f"_{what}_{uuid.uuid4().hex[:12]}"


def _scored(store: OfflineStore, catalog: Catalog, version: registry.ModelVersion, first_day: dt.date | None,
            last_day: dt.date | None, zone: str) -> tuple[FeatureView, tuple[str, str], list[TimeRange]]:
    """The version's pinned view, the predictions table holding its batch scores, and its days."""
    try:
        view = inference_view(store, catalog, version)
    except PredictionError as error:
        raise MonitoringError(str(error)) from error
    relation = batch_relation(store, version)
    if relation is None:
        raise MonitoringError(f"model {version.model_name} v{version.version} has no batch predictions (no row "
                              f"of it in predictions.{version.model_name} or its alias tables): run `fti predict "
                              f"--model {version.model_name}` first")
    if first_day is None or last_day is None:
        scored = scored_days(store, relation, view, version, zone)
        assert scored is not None  # batch_relation found rows of the version
        first_day, last_day = first_day or scored[0], last_day or scored[1]
    return view, relation, day_windows(first_day, last_day, zone)


def _batch(store: OfflineStore, catalog: Catalog, version: registry.ModelVersion, first_day: dt.date | None,
           last_day: dt.date | None, zone: str) -> tuple[str, list[TimeRange], ir.Table]:
    """The predictions table, the days and the current rows of a batch run."""
    view, relation, windows = _scored(store, catalog, version, first_day, last_day, zone)
    return ".".join(relation), windows, current_expr(store, view, relation, version, windows)


def _online(settings: Settings, store: OfflineStore, version: registry.ModelVersion, kinds: Mapping[str, str],
            first_day: dt.date | None, last_day: dt.date | None, zone: str,
            scratch: list[str]) -> tuple[str, list[TimeRange], ir.Table]:
    """The prediction log, the hours and the current rows of an online run (the log copied into a scratch
    table, named in ``scratch``)."""
    path = settings.prediction_log_path
    if not path.exists():
        raise MonitoringError(f"no prediction log at {path}: the online service (`fti serve`) writes it")
    since = day_window(first_day, 1, zone).start if first_day else None
    log = online.read_log(path, since)
    logged = online.logged_span(log, version)
    if logged is None:
        raise MonitoringError(f"the prediction log {path} has no prediction of model {version.model_name} "
                              f"v{version.version}{f' from {first_day}' if first_day else ''}")
    span = TimeRange(since or logged.start, day_window(last_day, 1, zone).end if last_day else logged.end)
    scratch.append(_scratch("log"))
    store.create_table(SCHEMA, scratch[-1], log)
    return str(path), online.hour_windows(span), online.online_expr(store.table(SCHEMA, scratch[-1]), version,
                                                                     kinds, span)


@dataclass(frozen=True)
class PerformanceRun:
    """What :func:`compute_performance` did: the version, its predictions table, the windows, the slice
    columns, the rows written, and the overall metrics per window (window start -> metric -> value)."""

    model_name: str
    version: int
    origin: str
    windows: list[TimeRange]
    slices: tuple[str, ...]
    written: PerformanceWritten
    by_window: dict[dt.datetime, dict[str, float]]


def compute_performance(settings: Settings, model_name: str, ref: str | int = registry.CHAMPION, *,
                        first_day: dt.date | None = None, last_day: dt.date | None = None, zone: str = "UTC",
                        catalog: Catalog | None = None) -> PerformanceRun:
    """The version's batch predictions joined to the outcomes known so far, per day (of ``zone``) and per
    slice, into ``monitoring.performance`` (default: every day it scored)."""
    version = registry.resolve(settings, model_name, ref)
    catalog = catalog if catalog is not None else load_catalog(settings)
    with hold_home(settings, f"monitor performance {model_name}"), opened(settings) as store:
        ensure_tables(store)
        view, relation, windows = _scored(store, catalog, version, first_day, last_day, zone)
        span = TimeRange(windows[0].start, windows[-1].end)
        scratch = _scratch("labelled")
        store.create_table(SCHEMA, scratch, labelled_expr(store, view, relation, version, windows))
        try:
            written = write_performance(store, f'{SCHEMA}."{scratch}"', view.label.slices, model_name=model_name,
                                        version=version.version, span=span, computed_at=dt.datetime.now(_UTC))
        finally:
            store.drop_table(SCHEMA, scratch)
        rows = store.query(f"select window_start, metric, value from {PERFORMANCE} where model_name = ? and "
                           f"version = ? and slice_column = '' and window_start >= ? and window_end <= ? "
                           f"order by window_start", [model_name, version.version, span.start, span.end])
    by_window: dict[dt.datetime, dict[str, float]] = {}
    for row in rows:
        by_window.setdefault(row["window_start"].astimezone(_UTC), {})[row["metric"]] = row["value"]
    return PerformanceRun(model_name, version.version, ".".join(relation), windows, view.label.slices, written,
                          by_window)


@dataclass(frozen=True)
class MonitoringRun:
    """What :func:`monitor` did: the version, the span, its thresholds, the drift and performance runs, the
    evaluated days pooled, the groups' freshness, the alerts, and whether this run claimed a retraining
    (False also when one was claimed for the span before: a re-run starts nothing)."""

    model_name: str
    version: int
    view: str
    span: TimeRange
    thresholds: Thresholds
    drift: DriftRun
    performance: PerformanceRun | None
    evaluated: EvaluatedPerformance
    freshness: list[GroupFreshness]
    alerts: list[Alert]
    retrain_reason: str
    retrain_claimed: bool

    @property
    def retrain_called_for(self) -> bool:
        return bool(self.retrain_reason)


def monitor(settings: Settings, model_name: str, ref: str | int = registry.CHAMPION, *,
            first_day: dt.date | None = None, last_day: dt.date | None = None, days: int | None = None,
            zone: str = "UTC", overrides: Mapping[str, Any] | None = None, catalog: Catalog | None = None,
            now: dt.datetime | None = None, claim: bool = True) -> MonitoringRun:
    """Everything monitoring computes for the version behind ``ref``, once: drift of its batch predictions
    (or, for a model scored only online, its prediction log) per day, performance on the outcomes known so
    far, the freshness of the groups it reads, the alerts against its view's thresholds (``overrides``
    over them), and the retraining claim when a retrain threshold is crossed (``claim=False``: the reason
    is reported and nothing is claimed, so a later run may still start it).

    The days: ``first_day`` through ``last_day``, by default the last ``days`` (the view's ``monitoring.days``)
    days it scored."""
    now = now or dt.datetime.now(_UTC)
    catalog = catalog if catalog is not None else load_catalog(settings)
    version, model = registry.load(settings, model_name, ref)
    limits = thresholds(catalog.view(version.feature_view), overrides)
    test_roc_auc = registry.get_metrics(settings, model_name, version.version).get("test", {}).get("roc_auc")
    with hold_home(settings, f"monitor {model_name}"):
        with opened(settings) as store:
            batch = batch_relation(store, version) is not None
            if batch and (first_day is None or last_day is None):
                scored = [w.start.astimezone(time_zone(zone)).date()
                          for w in _scored(store, catalog, version, None, None, zone)[2]]
                last_day = last_day or scored[-1]
                first_day = first_day or max(scored[0], last_day - dt.timedelta(days=(days or limits.days) - 1))
            if not batch and first_day is None:
                first_day = now.astimezone(time_zone(zone)).date() - dt.timedelta(days=(days or limits.days) - 1)
            view = inference_view(store, catalog, version)
        source = SOURCE_BATCH if batch else online.SOURCE_ONLINE
        drift = compute_drift(settings, model_name, version.version, source=source, first_day=first_day,
                              last_day=last_day, zone=zone, catalog=catalog)
        performance = compute_performance(settings, model_name, version.version, first_day=first_day,
                                          last_day=last_day, zone=zone, catalog=catalog) if batch else None
        span = TimeRange(drift.windows[0].start, drift.windows[-1].end)
        with opened(settings) as store:
            ensure_tables(store)
            freshness = check_freshness(store, view, as_of=span.end, now=now)
            write_freshness(store, freshness, as_of=span.end, computed_at=now)
            evaluated = evaluated_performance(store, model_name, version.version, span, limits, test_roc_auc)
            alerts = evaluate(drift.features, model.feature_importance(), evaluated, freshness, limits)
            write_alerts(store, alerts, model_name=model_name, version=version.version, span=span, computed_at=now)
            why = retrain.reason(alerts)
            claimed = claim and bool(why) and retrain.claim(store, model_name, version.version, span, why, now)
    return MonitoringRun(model_name, version.version, version.feature_view, span, limits, drift, performance,
                         evaluated, freshness, alerts, why, claimed)


def record_retrain(settings: Settings, run: MonitoringRun, *, how: str, flow_run_id: str | None,
                   outcome: str) -> None:
    """Say how the retraining ``run`` claimed was started and what came of it (``monitoring.retrains``)."""
    with hold_home(settings, f"monitor {run.model_name}"), opened(settings) as store:
        retrain.record(store, run.model_name, run.version, run.span, how=how, flow_run_id=flow_run_id,
                       outcome=outcome)
