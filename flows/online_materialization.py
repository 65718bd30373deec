"""Prefect flow of online materialization: refresh the online store from the warehouse, publish champions.

Thin wiring of models_ml.inference.online (the rules are in ``materialize``'s and ``store``'s docstrings): run it
after each feature-pipeline run. It reads only rows loaded since each group's watermark, merges them into
the store in one atomic step (latest event wins; a late older event never overwrites a newer one),
records each group's freshness, and (re)publishes every model's champion pointer for the inference
service, which never opens the warehouse. A markdown artifact reports rows read and written per group and
their freshness. Warehouse reads retry on I/O errors only (another process may hold the DuckDB file for a
moment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.inference.online import materialize as mt
from models_ml.training import registry
from models_ml.inference.online.store import open_store


def _is_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: file and lock errors, an unreachable Redis."""
    import redis

    try:
        state.result()
    except (OSError, duckdb.IOException, redis.ConnectionError, redis.TimeoutError):
        return True
    except Exception:  # noqa: BLE001 - bad data or a bug; retrying would hide it
        return False
    return False


_IO = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _is_io_error, "cache_policy": NO_CACHE}


@task(name="materialize-online-store", **_IO)
def materialize_task(settings: Settings, store_kind: str | None, groups: Sequence[str] | None,
                     full_refresh: bool) -> mt.MaterializationReport:
    catalog = load_catalog(settings)
    with open_store(settings, store_kind) as store:
        report = mt.materialize(settings, store, catalog=catalog, groups=groups, full_refresh=full_refresh)
    logger = get_run_logger()
    for g in report.groups:
        logger.info("%s (%s): %s offline rows -> %s entities, %s written; latest event %s", g.group, g.mode,
                    f"{g.source_rows:,}", f"{g.candidates:,}", f"{g.rows_written:,}",
                    g.freshness.latest_event_at if g.freshness else "-")
    return report


@task(name="publish-champions", **_IO)
def publish_task(settings: Settings) -> list[dict[str, Any]]:
    pointers = registry.publish_champions(settings)
    for p in pointers:
        get_run_logger().info("published %s champion v%d -> %s", p.model_name, p.version, p.path)
    return [{"model": p.model_name, "version": p.version, "pointer": str(p.path)} for p in pointers]


@flow(name="online-materialization")
def online_materialization(
    store: str | None = None,
    groups: list[str] | None = None,
    full_refresh: bool = False,
    publish_champions: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Refresh the online store (``store``: sqlite or redis, default from FTI_ONLINE_STORE) for every online
    feature group (or ``groups``), then publish the champion pointers the inference service reads."""
    settings = load_settings(home)
    report = materialize_task(settings, store, groups, full_refresh)
    published = publish_task(settings) if publish_champions else []
    markdown = report.as_markdown()
    if published:
        markdown += "\n\nChampions published for the inference service: " + ", ".join(
            f"{p['model']} v{p['version']}" for p in published)
    create_markdown_artifact(
        key="online-materialization", markdown=markdown,
        description=f"{report.store}: {sum(g.rows_written for g in report.groups):,} rows written",
    )
    return {**report.as_dict(), "published": published}


if __name__ == "__main__":
    online_materialization()
