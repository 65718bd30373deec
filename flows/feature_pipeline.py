"""Prefect flow of the feature pipeline: land new raw data, then `dbt build` staging, features and labels.

Thin wiring of models_ml.features.pipeline: each task wraps one of its steps and adds a log line, and the
pipeline's one composition (:func:`~models_ml.features.pipeline.run_feature_pipeline`) calls them in order.
A failing error-severity test (or unit test, or contract) fails the flow with a message naming the test and
showing failing rows; models downstream of it are skipped and so not published. Every run, failed or not,
is recorded in ops.feature_pipeline_runs and as a Prefect markdown artifact; a run with nothing new to build
skips dbt and says so. The run holds the home (models_ml.core.home_lock): a second writer fails at once with
one line naming the holder (HomeBusy, never retried). Landing and counting retry on I/O errors only
(flows/retry.py); a dbt build is not retried.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.retry import CPU_TASK_OPTIONS, io_task_options
from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.dbt_project import DbtRun
from models_ml.features import pipeline as fp
from models_ml.features.landing import LandingReport

IO = io_task_options()


@task(name="land-raw-data", **IO)
def land_task(settings: Settings, through: dt.date | None, domain: str | None = None, run_id: str | None = None
              ) -> tuple[dt.date, LandingReport]:
    day, report = fp.land_raw(settings, through, domain, run_id)
    get_run_logger().info("landed %s %s rows through %s: %s", report.total_rows, domain, day, report.rows_landed())
    return day, report


@task(name="dbt-build", **CPU_TASK_OPTIONS)
def build_task(settings: Settings, full_refresh: bool, select: str | None = None) -> DbtRun:
    run = fp.build_features(settings, full_refresh=full_refresh, select=select)
    get_run_logger().info(
        "dbt build: %d nodes in %.1f s (%.1f s in SQL)", len(run.outcomes), run.seconds, run.node_seconds()
    )
    return run


@task(name="count-rows", **IO)
def count_task(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    return fp.count_rows(settings)


STEPS = fp.FeatureSteps(land=land_task, build=build_task, count=count_task)


def _report(run: fp.FeaturePipelineRun) -> None:
    create_markdown_artifact(
        key="feature-pipeline-run", markdown=run.as_markdown(), description="rows landed, built, quarantined"
    )
    get_run_logger().info("feature pipeline %s (dbt build %s): landed %s, quarantined %s; %s", run.status,
                          run.build or "not run", run.rows_landed, run.rows_quarantined, run.rows_built)


@flow(name="feature-pipeline")
def feature_pipeline(
    through: str | None = None, full_refresh: bool = False, home: str | None = None,
    domain: str | None = None,
) -> dict:
    """Land raw data of `domain` (declared with its dbt sources; default: the only one) through `through`
    (ISO date; default: the next day not landed) and build the features its data feeds."""
    run = fp.run_feature_pipeline(
        load_settings(home), dt.date.fromisoformat(through) if through else None, full_refresh=full_refresh,
        domain=domain, steps=STEPS, on_finish=_report,
    )
    return run.as_dict()


if __name__ == "__main__":
    feature_pipeline()
