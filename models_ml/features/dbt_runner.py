"""dbt builds with clear errors: a failed build names every failing node and shows a failing test's stored
rows, read back through the offline store (the invocation itself is :func:`models_ml.definitions.dbt_project.run_dbt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models_ml.core.settings import Settings
from models_ml.definitions.dbt_project import DbtRun, NodeOutcome, run_dbt
from models_ml.offline.store import OfflineStoreError, opened, transient_errors


class DbtBuildError(RuntimeError):
    """A dbt build failed; the message names every failing node and shows failing rows."""

    def __init__(self, message: str, run: DbtRun):
        super().__init__(message)
        self.run = run


def failing_rows(settings: Settings, outcome: NodeOutcome, limit: int = 5) -> list[dict[str, Any]]:
    """The first failing rows a test stored (tests store their failures in the `audit` schema); none when
    they cannot be read, so a report of the failure never fails itself."""
    if outcome.resource_type != "test" or not outcome.relation_name:
        return []
    *_, schema, name = (part.strip('"') for part in outcome.relation_name.split("."))
    try:
        with opened(settings, read_only=True) as store:
            if not store.exists(schema, name):
                return []
            return store.to_arrow(store.table(schema, name).limit(int(limit))).to_pylist()
    except (OfflineStoreError, *transient_errors()):
        return []


def describe_failures(settings: Settings, run: DbtRun, rows_per_test: int = 5) -> str:
    """A readable report of what failed in a run: each failing node, its message and failing rows."""
    lines = [f"dbt {' '.join(run.args)} failed:"]
    if run.exception:
        lines.append(f"  {run.exception}")
    for outcome in run.failed():
        count = f" ({outcome.failures} failing rows)" if outcome.failures else ""
        lines.append(f"- {outcome.resource_type} {outcome.name}: {outcome.status}{count}")
        if outcome.message:
            lines.append(f"    {outcome.message.strip()}")
        for row in failing_rows(settings, outcome, rows_per_test):
            lines.append(f"    row: {row}")
    skipped = [o.name for o in run.skipped() if o.resource_type == "model"]
    if skipped:
        lines.append(f"not published (skipped): {', '.join(sorted(skipped))}")
    return "\n".join(lines)


def build(settings: Settings, args: Sequence[str], dbt_vars: dict[str, Any] | None = None) -> DbtRun:
    """`dbt <args>` that raises DbtBuildError (naming tests and failing rows) when anything failed."""
    run = run_dbt(settings, args, dbt_vars)
    if not run.success or run.failed():
        raise DbtBuildError(describe_failures(settings, run), run)
    return run
