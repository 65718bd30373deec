"""Prefect flow of online materialization: refresh the online store from the warehouse, publish champions.

Thin wiring of models_ml.inference.online.materialize: each task wraps one of its steps and adds log lines,
and the pipeline's one composition (:func:`~models_ml.inference.online.materialize.run_online_materialization`)
calls them in order; the rules are in ``materialize``'s and ``store``'s docstrings. Run it after each
feature-pipeline run. Both steps retry on I/O errors only (flows/retry.py): the warehouse's, and for the
refresh also the chosen online store's own transient errors (an unreachable Redis). A markdown artifact
reports rows read and written per group and their freshness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.retry import io_task_options
from models_ml.core.settings import Settings, load_settings
from models_ml.inference.online import materialize as mt
from models_ml.inference.online.store import store_class
from models_ml.training import registry
from models_ml.training.champion_pointer import Pointer


@task(name="materialize-online-store")  # retries set per run, for the chosen store (see the flow)
def materialize_task(settings: Settings, store: str | None, groups: Sequence[str] | None,
                     full_refresh: bool) -> mt.MaterializationReport:
    report = mt.refresh_online_store(settings, store, groups, full_refresh)
    logger = get_run_logger()
    for g in report.groups:
        logger.info("%s (%s): %s offline rows -> %s entities, %s written; latest event %s", g.group, g.mode,
                    f"{g.source_rows:,}", f"{g.candidates:,}", f"{g.rows_written:,}",
                    g.freshness.latest_event_at if g.freshness else "-")
    return report


@task(name="publish-champions", **io_task_options())
def publish_task(settings: Settings) -> list[Pointer]:
    pointers = registry.publish_champions(settings)
    for p in pointers:
        get_run_logger().info("published %s champion v%d -> %s", p.model_name, p.version, p.path)
    return pointers


@flow(name="online-materialization")
def online_materialization(
    store: str | None = None,
    groups: list[str] | None = None,
    full_refresh: bool = False,
    publish_champions: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Refresh the online store (``store``: a name of models_ml.inference.online.store.STORES, default from
    FTI_ONLINE_STORE) for every online feature group (or ``groups``), then publish the champion pointers
    the inference service reads."""
    settings = load_settings(home)
    transient = store_class(store or settings.online_store).transient
    steps = mt.OnlineSteps(refresh=materialize_task.with_options(**io_task_options(transient)), publish=publish_task)
    result = mt.run_online_materialization(settings, store=store, groups=groups, full_refresh=full_refresh,
                                           publish_champions=publish_champions, steps=steps)
    create_markdown_artifact(
        key="online-materialization", markdown=result.as_markdown(),
        description=f"{result.report.store}: {sum(g.rows_written for g in result.report.groups):,} rows written",
    )
    return result.as_dict()


if __name__ == "__main__":
    online_materialization()
