"""Runs dbt in-process against the project and turns its results into plain values.

dbt's runner is not safe to call concurrently, and dbt-duckdb keeps the warehouse file open after a call
(other processes then see "Conflicting lock is held"): every call is serialised and releases the file.
The catalog parses the project through :func:`run_dbt`; the feature pipeline builds it
(:mod:`models_ml.features.dbt_runner`, which also reads failing tests' rows back).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models_ml.core.settings import Settings


_DBT_LOCK = threading.Lock()


FAILED_STATUSES = {"error", "fail", "runtime error"}


@dataclass(frozen=True)
class NodeOutcome:
    """The result of one dbt node (model, test, unit test) in a run."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str | None
    failures: int | None
    execution_time: float
    relation_name: str | None
    rows_affected: int | None = None

    @property
    def failed(self) -> bool:
        return self.status.lower() in FAILED_STATUSES


@dataclass
class DbtRun:
    """What a dbt invocation did: its arguments, success, per-node outcomes and wall time."""

    args: list[str]
    success: bool
    outcomes: list[NodeOutcome] = field(default_factory=list)
    seconds: float = 0.0
    exception: str | None = None

    def failed(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes if o.failed]

    def skipped(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes if o.status.lower() == "skipped"]

    def models(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes if o.resource_type == "model"]

    def node_seconds(self) -> float:
        """Time dbt spent executing nodes (SQL), as opposed to its own start-up and parsing."""
        return sum(o.execution_time for o in self.outcomes)


def _outcome(result: Any) -> NodeOutcome:
    node = result.node
    adapter_response = result.adapter_response or {}
    return NodeOutcome(
        unique_id=node.unique_id,
        name=node.name,
        resource_type=str(getattr(node.resource_type, "value", node.resource_type)),
        status=str(getattr(result.status, "value", result.status)),
        message=result.message,
        failures=result.failures,
        execution_time=float(result.execution_time or 0.0),
        relation_name=getattr(node, "relation_name", None),
        rows_affected=adapter_response.get("rows_affected"),
    )


def release_warehouse() -> None:
    """Close dbt-duckdb's cached connection so the warehouse file is free for other processes."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    DuckDBConnectionManager.close_all_connections()


def run_dbt(settings: Settings, args: Sequence[str], dbt_vars: dict[str, Any] | None = None) -> DbtRun:
    """Invoke `dbt <args>` against the project and profile of `settings`, releasing the warehouse after."""
    import json

    from dbt.cli.main import dbtRunner

    settings.ensure_home()
    full_args = [
        *args,
        "--project-dir", str(settings.dbt_project_dir),
        "--profiles-dir", str(settings.dbt_profiles_dir),
        "--target", settings.dbt_target,
        "--target-path", str(settings.dbt_target_dir),
        "--log-path", str(settings.dbt_log_dir),
        "--log-level-file", settings.dbt_log_level_file,
        "--quiet",
    ]
    if dbt_vars:
        full_args += ["--vars", json.dumps(dbt_vars)]
    with _DBT_LOCK:
        previous = os.environ.get("FTI_HOME")
        os.environ["FTI_HOME"] = str(settings.home)
        started = time.perf_counter()
        try:
            result = dbtRunner().invoke(full_args)
        finally:
            release_warehouse()
            if previous is None:
                os.environ.pop("FTI_HOME", None)
            else:
                os.environ["FTI_HOME"] = previous
        seconds = time.perf_counter() - started
    outcomes = []
    results = getattr(result.result, "results", None)
    if results is not None:
        outcomes = [_outcome(r) for r in results]
    return DbtRun(
        args=list(args),
        success=bool(result.success),
        outcomes=outcomes,
        seconds=seconds,
        exception=str(result.exception) if result.exception else None,
    )
