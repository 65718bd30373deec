"""Prefect flow of batch inference: resolve the champion -> check its lineage -> features as of time -> score -> write.

Thin wiring of models_ml.inference.batch.predict (whose docstring states the rules: the window, the missing-features rule,
the idempotent write and the default day). Only steps that read or write the warehouse or model files
retry, and only on I/O errors; a refused model (a trained-on feature group version not in the catalog or
not built) fails at once with the reason. A markdown artifact reports rows scored, rows flagged, the mean
score and the model version.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models_ml.core.settings import Settings, load_settings
from models_ml.core.time import TimeRange, day_window
from models_ml.core.timing import Laps
from models_ml.definitions.catalog import FeatureView, load_catalog
from models_ml.inference.batch import predict as pr
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training.train import Model


def _is_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: file and lock errors (another process holding the warehouse)."""
    try:
        state.result()
    except (OSError, duckdb.IOException):
        return True
    except Exception:  # noqa: BLE001 - a refusal, a bug or bad data; retrying would hide it
        return False
    return False


# Arrow tables and models pass between tasks in memory: hashing them for a cache key would be slow.
_IO = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _is_io_error, "cache_policy": NO_CACHE}
_CPU = {"cache_policy": NO_CACHE}


@task(name="resolve-model", **_IO)
def resolve_model_task(settings: Settings, model: str, alias: str) -> tuple[registry.ModelVersion, Model]:
    version, loaded = registry.load(settings, model, alias)
    get_run_logger().info("%s %s -> v%d (feature view %s v%d, groups %s)", model, alias, version.version,
                          version.feature_view, version.feature_view_version, version.feature_group_versions)
    return version, loaded


@task(name="check-lineage", **_IO)
def check_lineage_task(settings: Settings, version: registry.ModelVersion) -> FeatureView:
    catalog = load_catalog(settings)
    con = sn.connect(settings)
    try:
        return pr.inference_view(con, catalog, version)
    finally:
        con.disconnect()


@task(name="choose-window", **_IO)
def choose_window_task(settings: Settings, view: FeatureView, table: str, day: str | None, days: int) -> TimeRange:
    if day is None:
        con = sn.connect(settings)
        try:
            chosen = pr.default_day(con, view, table)
        finally:
            con.disconnect()
        if chosen is None:
            raise ValueError(f"label model {view.label.qualified_relation} is empty: nothing to score; "
                             f"run the feature pipeline first")
        get_run_logger().info("no day given: %s is the first day with unscored rows", chosen)
        day = chosen.isoformat()
    return day_window(day, days)


@task(name="load-features", **_IO)
def load_features_task(settings: Settings, view: FeatureView, window: TimeRange,
                       features: Sequence[str]) -> pa.Table:
    con = sn.connect(settings)
    try:
        table = pr.load_features(con, view, window, features)
    finally:
        con.disconnect()
    get_run_logger().info("%s spine rows with features as of their %s", f"{table.num_rows:,}", view.label.spine_time)
    return table


@task(name="score", **_CPU)
def score_task(model: Model, version: registry.ModelVersion, view: FeatureView, features: pa.Table,
               scored_at: dt.datetime) -> pa.Table:
    return pr.assemble(features, pr.score(model, features), view, version, scored_at)


@task(name="write-predictions", **_IO)
def write_task(settings: Settings, table: str, predictions: pa.Table, view: FeatureView,
               window: TimeRange) -> pr.WriteResult:
    con = sn.connect(settings)
    try:
        written = pr.write_predictions(con.con, table, predictions, view, window)
    finally:
        con.disconnect()
    get_run_logger().info("%s: replaced %s rows by %s", table, f"{written.deleted:,}", f"{written.inserted:,}")
    return written


@flow(name="batch-inference")
def batch_inference(
    day: str | None = None,
    days: int = 1,
    model: str = "flight_delay",
    alias: str = "champion",
    home: str | None = None,
) -> dict[str, Any]:
    """Score the spine rows of ``days`` UTC days from ``day`` (on the label's event time) into predictions.<model>.

    ``day`` defaults to the first day with unscored rows (see models_ml.inference.batch.predict.default_day): after the
    daily feature pipeline, that is the day it just landed.
    """
    logger = get_run_logger()
    settings = load_settings(home)
    table = pr.table_name(model, alias)
    lap = Laps(digits=3)

    version, loaded = resolve_model_task(settings, model, alias)
    view = check_lineage_task(settings, version)
    window = choose_window_task(settings, view, table, day, days)
    lap("resolve")
    features = load_features_task(settings, view, window, loaded.spec.features)
    lap("features")
    scored_at = dt.datetime.now(dt.timezone.utc)
    predictions = score_task(loaded, version, view, features, scored_at)
    lap("score")
    written = write_task(settings, table, predictions, view, window)
    lap("write")

    run = pr.summarize(predictions, view, version, alias, window, written, scored_at, lap.seconds)
    logger.info("%s v%d: %s rows scored, %s flagged, mean score %s -> %s", model, version.version, f"{run.rows:,}",
                f"{run.flagged_rows:,}", "-" if run.mean_score is None else f"{run.mean_score:.4f}", table)
    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]+", "-", f"batch-inference-{model}-{alias}".lower()),
        markdown=run.as_markdown(),
        description=f"{model} v{version.version}: {run.rows:,} rows scored, {run.flagged_rows:,} flagged",
    )
    return run.as_dict()


if __name__ == "__main__":
    batch_inference()
