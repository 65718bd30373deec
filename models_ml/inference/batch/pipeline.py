"""The batch-inference pipeline, composed once: resolve -> check lineage -> choose window -> features -> score
-> write -> summarize.

Each step is a plain function that opens what it needs (the registry, the offline store) and closes it, so
a step can run as its own Prefect task, retried on I/O alone, while another process gets the warehouse in
between. :func:`run_batch_inference` calls them in order; the flow (flows/batch_inference.py) passes its
tasks, which wrap these same functions and add logging, and :func:`predict_window` (scripts, tests, the
benchmark) passes the functions themselves. The rules (window, spine, missing features, idempotent write,
default day) are in :mod:`models_ml.inference.batch.predict`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.home_lock import hold_home
from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange, day_window
from models_ml.core.timing import Timings
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.inference.batch import predict as pr
from models_ml.inference.batch.compiled_trees import compile_trees
from models_ml.offline.store import WindowReplaced, opened
from models_ml.training import registry
from models_ml.training.train import Model

_UTC = dt.timezone.utc


# --------------------------------------------------------------------------------------------------
# The steps


def resolve_model(settings: Settings, model_name: str, alias: str) -> tuple[registry.ModelVersion, Model]:
    """The version behind ``alias`` (or a version number) and its model, with its trees compiled to C
    where they can be (the same scores, faster; cached per home: see
    :mod:`models_ml.inference.batch.compiled_trees`) unless ``settings.compiled_trees`` is off."""
    version, model = registry.load(settings, model_name, alias)
    if settings.compiled_trees:
        compiled = compile_trees(model.booster, model.best_iteration, settings.compiled_trees_dir)
        model = dataclasses.replace(model, compiled=compiled)
    return version, model


def check_lineage(settings: Settings, version: registry.ModelVersion, catalog: Catalog | None = None) -> FeatureView:
    """The view to score with, pinned to the model's trained-on group versions and checked as built
    (PredictionError otherwise)."""
    catalog = catalog if catalog is not None else load_catalog(settings)
    with opened(settings) as store:
        return pr.inference_view(store, catalog, version)


def choose_window(settings: Settings, view: FeatureView, relation: tuple[str, str], day: str | dt.date | None,
                  days: int, zone: str = "UTC") -> TimeRange:
    """``[day, day + days)`` as days of ``zone`` (default UTC); without a day, from the first day with
    unscored rows (:func:`~models_ml.inference.batch.predict.default_day`)."""
    if day is None:
        with opened(settings) as store:
            day = pr.default_day(store, view, relation, zone)
        if day is None:
            schema, name = view.scoring_relation
            raise pr.EmptyWindow(f"nothing to score: {schema}.{name} is empty; run the feature pipeline first")
    return day_window(day, days, zone)


def load_features(settings: Settings, view: FeatureView, window: TimeRange, features: Sequence[str]) -> pa.Table:
    """The window's spine rows with their features as of each row's spine time, in Arrow."""
    with opened(settings) as store:
        return pr.load_features(store, view, window, features)


def score(model: Model, version: registry.ModelVersion, view: FeatureView, features: pa.Table,
          scored_at: dt.datetime, num_threads: int | None = None) -> tuple[pa.Table, dict[str, float]]:
    """The predictions rows (scores, missing-group flags, lineage) and the seconds each part took."""
    timings = Timings()
    scores = pr.score(model, features, num_threads=num_threads, timings=timings)
    with timings.stage("assemble"):
        predictions = pr.assemble(features, scores, view, version, scored_at)
    return predictions, timings.seconds


def write(settings: Settings, relation: tuple[str, str], predictions: pa.Table, view: FeatureView,
          window: TimeRange) -> WindowReplaced:
    """Replace the window's rows of the predictions table, in one transaction."""
    with opened(settings) as store:
        return pr.write_predictions(store, relation, predictions, view, window)


# --------------------------------------------------------------------------------------------------
# The run's summary


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
    written: WindowReplaced, scored_at: dt.datetime, seconds: dict[str, float],
) -> PredictionRun:
    missing = predictions[pr.MISSING_GROUPS]
    counts: dict[str, int] = {}
    if predictions.num_rows and pc.sum(pc.list_value_length(missing)).as_py():
        flat = pc.value_counts(pc.list_flatten(missing))
        counts = dict(zip(flat.field("values").to_pylist(), flat.field("counts").to_pylist()))
    mean = pc.mean(predictions[pr.SCORE]).as_py() if predictions.num_rows else None
    return PredictionRun(
        model_name=version.model_name, model_version=version.version, alias=str(alias),
        feature_view=version.feature_view, feature_view_version=version.feature_view_version,
        table=pr.table_name(version.model_name, alias), window=window, rows=predictions.num_rows,
        flagged_rows=int(pc.sum(predictions[pr.HAS_MISSING]).as_py() or 0),
        missing_by_group={g: counts[g] for g in view.group_labels if g in counts}, mean_score=mean,
        deleted=written.deleted, scored_at=scored_at, seconds={k: round(v, 4) for k, v in seconds.items()},
    )


# --------------------------------------------------------------------------------------------------
# The composition


@dataclass(frozen=True)
class BatchSteps:
    """The steps :func:`run_batch_inference` calls; a flow passes its tasks, which wrap these same functions."""

    resolve_model: Callable[[Settings, str, str], tuple[registry.ModelVersion, Model]] = resolve_model
    check_lineage: Callable[[Settings, registry.ModelVersion, Catalog | None], FeatureView] = check_lineage
    choose_window: Callable[[Settings, FeatureView, tuple[str, str], Any, int, str], TimeRange] = choose_window
    load_features: Callable[[Settings, FeatureView, TimeRange, Sequence[str]], pa.Table] = load_features
    score: Callable[..., tuple[pa.Table, dict[str, float]]] = score
    write: Callable[[Settings, tuple[str, str], pa.Table, FeatureView, TimeRange], WindowReplaced] = write


def run_batch_inference(
    settings: Settings,
    model_name: str | None = None,
    *,
    alias: str = registry.CHAMPION,
    window: TimeRange | None = None,
    day: str | dt.date | None = None,
    days: int = 1,
    timezone: str = "UTC",
    catalog: Catalog | None = None,
    num_threads: int | None = None,
    scored_at: dt.datetime | None = None,
    steps: BatchSteps = BatchSteps(),
) -> PredictionRun:
    """Score every spine row of ``window`` (or of ``days`` days from ``day``, calendar days of ``timezone``,
    by default the first day with unscored rows) with ``model_name``'s ``alias`` (default: the only registered model) and replace those
    rows of its predictions table. A window with nothing to score raises EmptyWindow.

    ``seconds`` of the result: per step, with scoring split into ``prepare_features``, ``predict`` and
    ``assemble``. Holds the home (models_ml.core.home_lock): features are never read from a half-built
    warehouse, and predictions are written by one writer.
    """
    model_name = registry.model_name(settings, model_name)
    with hold_home(settings, "batch inference"):
        return _run_batch_inference(settings, model_name, alias, window, day, days, timezone, catalog,
                                    num_threads, scored_at, steps)


def _run_batch_inference(settings: Settings, model_name: str, alias: str, window: TimeRange | None,
                         day: str | dt.date | None, days: int, timezone: str, catalog: Catalog | None,
                         num_threads: int | None, scored_at: dt.datetime | None, steps: BatchSteps) -> PredictionRun:
    timings = Timings()
    relation = pr.predictions_relation(model_name, alias)
    with timings.stage("resolve_model"):
        version, model = steps.resolve_model(settings, model_name, alias)
    with timings.stage("check_lineage"):
        view = steps.check_lineage(settings, version, catalog)
    if window is None:
        with timings.stage("choose_window"):
            window = steps.choose_window(settings, view, relation, day, days, timezone)
    with timings.stage("features"):
        features = steps.load_features(settings, view, window, model.spec.features)
    scored_at = scored_at or dt.datetime.now(_UTC)
    predictions, seconds = steps.score(model, version, view, features, scored_at, num_threads)
    for stage, spent in seconds.items():
        timings.seconds[stage] = timings.seconds.get(stage, 0.0) + spent
    with timings.stage("write"):
        written = steps.write(settings, relation, predictions, view, window)
    return summarize(predictions, view, version, alias, window, written, scored_at, timings.seconds)


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
    """Score every spine row of ``window`` with ``model_name``'s ``alias`` and replace the window's predictions:
    the batch-inference flow's steps, in one call (for scripts, tests and the benchmark)."""
    return run_batch_inference(settings, model_name, alias=alias, window=window, catalog=catalog,
                               num_threads=num_threads, scored_at=scored_at)
