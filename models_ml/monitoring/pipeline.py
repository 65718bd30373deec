"""Monitoring runs, composed once.

Drift: resolve the version (and, for batch, its pinned view), build its reference if missing, put the
current rows labelled by window in a scratch table, compute and write the statistics, summarize. Batch
predictions are windowed by day of their event time, the online prediction log by hour of arrival.
Performance: the version's batch predictions joined to the outcomes known so far, per day and slice.

Held under the home's lock (:func:`models_ml.core.home_lock.hold_home`), like every warehouse write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import ibis.expr.types as ir

from models_ml.core.home_lock import hold_home
from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange, day_window
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.inference.batch.predict import PredictionError, inference_view
from models_ml.monitoring import online
from models_ml.monitoring.current import SOURCE_BATCH, batch_relation, current_expr, day_windows, scored_days
from models_ml.monitoring.drift import BINS, EPSILON, DriftWritten, write_drift
from models_ml.monitoring.performance import PerformanceWritten, labelled_expr, write_performance
from models_ml.monitoring.profile import input_kinds
from models_ml.monitoring.reference import MonitoringError, Reference, ensure_reference
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
            written = write_drift(store, f'{SCHEMA}."{scratch[-1]}"', kinds, model_name=model_name,
                                  version=version.version, source=source, span=span,
                                  computed_at=dt.datetime.now(_UTC), bins=bins, epsilon=epsilon)
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
