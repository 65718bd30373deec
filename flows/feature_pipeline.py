"""Prefect flow of the feature pipeline: land new raw data, then `dbt build` staging, features and labels.

A failing error-severity test (or unit test, or contract) fails the flow with a message naming the test and
showing failing rows; models downstream of it are skipped and so not published. Every run, failed or not,
is recorded in ops.feature_pipeline_runs and as a Prefect markdown artifact.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features import pipeline as fp
from models_ml.features.dbt_runner import DbtBuildError


@task(name="land-raw-data", retries=2, retry_delay_seconds=5)
def land_task(
    settings: Settings, through: dt.date | None, example: str = fp.DEFAULT_EXAMPLE
) -> tuple[str, dict[str, int]]:
    day, report = fp.land_raw(settings, through, example)
    get_run_logger().info("landed %s %s rows through %s: %s", report.total_rows, example, day, report.rows_landed())
    return day.isoformat(), report.rows_landed()


@task(name="dbt-build")
def build_task(settings: Settings, full_refresh: bool, select: str | None = None) -> tuple[float, float]:
    run = fp.build_features(settings, full_refresh=full_refresh, select=select)
    get_run_logger().info(
        "dbt build: %d nodes in %.1f s (%.1f s in SQL)", len(run.outcomes), run.seconds, run.node_seconds()
    )
    return run.seconds, run.node_seconds()


@task(name="count-rows")
def count_task(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    relations = fp.published_relations(load_catalog(settings))
    return fp.relation_row_counts(settings, relations), fp.quarantine_counts(settings)


@flow(name="feature-pipeline")
def feature_pipeline(
    through: str | None = None, full_refresh: bool = False, home: str | None = None,
    example: str = fp.DEFAULT_EXAMPLE,
) -> dict:
    """Land raw data of `example` (an `examples/<example>/loader.py`) through `through` (ISO date; default:
    the next day not landed) and build the features its data feeds."""
    settings = load_settings(home)
    logger = get_run_logger()
    run = fp.FeaturePipelineRun()
    before, _ = count_task(settings)
    try:
        run.landed_through, run.rows_landed = land_task(
            settings, dt.date.fromisoformat(through) if through else None, example
        )
        run.dbt_seconds, run.dbt_node_seconds = build_task(
            settings, full_refresh, fp.example_loader(example).DBT_SELECTION
        )
        run.status = "succeeded"
    except DbtBuildError as error:
        run.status, run.error = "failed", str(error)
        raise
    finally:
        run.rows_built, run.rows_quarantined = count_task(settings)
        run.rows_added = {t: n - before.get(t, 0) for t, n in run.rows_built.items()}
        run.finished_at = dt.datetime.now(dt.timezone.utc)
        fp.record_run(settings, run)
        create_markdown_artifact(
            key="feature-pipeline-run", markdown=run.as_markdown(), description="rows landed, built, quarantined"
        )
        logger.info("feature pipeline %s: %s", run.status, run.rows_built)
    return {
        "run_id": run.run_id,
        "landed_through": run.landed_through,
        "rows_landed": run.rows_landed,
        "rows_built": run.rows_built,
        "rows_quarantined": run.rows_quarantined,
    }


if __name__ == "__main__":
    feature_pipeline()
