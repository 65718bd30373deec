"""Prefect flow of batch inference: resolve the champion -> check its lineage -> features as of time -> score -> write.

Thin wiring of models_ml.inference.batch.pipeline: each task wraps one of its steps and adds a log line,
and the pipeline's one composition (:func:`~models_ml.inference.batch.pipeline.run_batch_inference`)
calls them in order; the rules (the window, the missing-features rule, the idempotent write, the default
day) are in models_ml.inference.batch.predict. Steps that read or write the warehouse or model files retry
on I/O errors only (flows/retry.py); a refused model (a trained-on feature group version not in the
catalog or not built) fails at once with the reason. A markdown artifact reports rows scored, rows
flagged, the mean score and the model version.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.retry import CPU_TASK_OPTIONS, io_task_options
from models_ml.core.settings import Settings, load_settings
from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import Catalog, FeatureView
from models_ml.inference.batch import pipeline as bp
from models_ml.offline.store import WindowReplaced
from models_ml.training import registry
from models_ml.training.train import Model

IO = io_task_options()


@task(name="resolve-model", **IO)
def resolve_model_task(settings: Settings, model: str, alias: str) -> tuple[registry.ModelVersion, Model]:
    version, loaded = bp.resolve_model(settings, model, alias)
    get_run_logger().info("%s %s -> v%d (feature view %s v%d, groups %s)", model, alias, version.version,
                          version.feature_view, version.feature_view_version, version.feature_group_versions)
    return version, loaded


@task(name="check-lineage", **IO)
def check_lineage_task(settings: Settings, version: registry.ModelVersion, catalog: Catalog | None) -> FeatureView:
    return bp.check_lineage(settings, version, catalog)


@task(name="choose-window", **IO)
def choose_window_task(settings: Settings, view: FeatureView, relation: tuple[str, str], day: str | None,
                       days: int, zone: str = "UTC") -> TimeRange:
    window = bp.choose_window(settings, view, relation, day, days, zone)
    if day is None:
        get_run_logger().info("no day given: %s is the first day with unscored rows", window.start.date())
    return window


@task(name="load-features", **IO)
def load_features_task(settings: Settings, view: FeatureView, window: TimeRange,
                       features: Sequence[str]) -> pa.Table:
    table = bp.load_features(settings, view, window, features)
    get_run_logger().info("%s spine rows with features as of their %s", f"{table.num_rows:,}", view.label.spine_time)
    return table


@task(name="score", **CPU_TASK_OPTIONS)
def score_task(model: Model, version: registry.ModelVersion, view: FeatureView, features: pa.Table,
               scored_at: dt.datetime, num_threads: int | None) -> tuple[pa.Table, dict[str, float]]:
    return bp.score(model, version, view, features, scored_at, num_threads)


@task(name="write-predictions", **IO)
def write_task(settings: Settings, relation: tuple[str, str], predictions: pa.Table, view: FeatureView,
               window: TimeRange) -> WindowReplaced:
    written = bp.write(settings, relation, predictions, view, window)
    get_run_logger().info("%s: replaced %s rows by %s", written.table, f"{written.deleted:,}", f"{written.inserted:,}")
    return written


STEPS = bp.BatchSteps(resolve_model=resolve_model_task, check_lineage=check_lineage_task,
                      choose_window=choose_window_task, load_features=load_features_task, score=score_task,
                      write=write_task)


@flow(name="batch-inference")
def batch_inference(
    day: str | None = None,
    days: int = 1,
    model: str | None = None,
    alias: str = "champion",
    home: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """Score the inference spine's rows of ``days`` days from ``day`` (calendar days of ``timezone``, on the
    event time) with ``model``
    (default: the only registered model) into predictions.<model>.

    ``day`` defaults to the first day with unscored rows (see models_ml.inference.batch.predict.default_day):
    after the daily feature pipeline, that is the schedule it just published (tomorrow's flights).
    """
    settings = load_settings(home)
    model = registry.model_name(settings, model)
    run = bp.run_batch_inference(settings, model, alias=alias, day=day, days=days, timezone=timezone, steps=STEPS)
    get_run_logger().info("%s v%d: %s rows scored, %s flagged, mean score %s -> %s", model, run.model_version,
                          f"{run.rows:,}", f"{run.flagged_rows:,}",
                          "-" if run.mean_score is None else f"{run.mean_score:.4f}", run.table)
    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]+", "-", f"batch-inference-{model}-{alias}".lower()),
        markdown=run.as_markdown(),
        description=f"{model} v{run.model_version}: {run.rows:,} rows scored, {run.flagged_rows:,} flagged",
    )
    return run.as_dict()


if __name__ == "__main__":
    batch_inference()
