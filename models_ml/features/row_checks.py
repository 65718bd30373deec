"""Which data tests a daily build checks inside the models that write the rows they test, instead of as dbt
nodes of their own (dbt macros/row_checks.sql; README, "One check per model").

The row rules (`ROW_RULES`, error severity) leave dbt's selection by one term each: dbt's selection costs
time per term and per node, so naming each test would cost a daily build more than the nodes it saves. That
is allowed only where every such test downstream of a domain's sources can be checked by a model of the
build: a generic test of one model with dbt's default outcome (fail_calc count(*), warn_if and error_if
`!= 0`, no limit), on an incremental model whose post-hook runs `check_written_rows()`, or on a view whose
every parent is such a model (a staging view of one base model; a domain's quarantine over its base
models). A domain with any other such test (a view over views, a custom threshold) keeps every test a node.
Tests of two models (`relationships`), warnings and singular tests stay nodes in any case. Only DuckDB rolls
a failed check back with the model's rows, so only the DuckDB engine checks tests this way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from models_ml.definitions.catalog import downstream

CHECK_WRITTEN_ROWS_VAR = "fti_check_written_rows"
CHECK_HOOK = "check_written_rows("
ROW_RULES = ("not_null", "unique", "accepted_values", "expression_is_true", "unique_combination_of_columns")
_DEFAULT_OUTCOME = {"fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "!= 0", "limit": None}

Node = Mapping[str, Any]


def _checks_its_rows(node: Node | None) -> bool:
    config = (node or {}).get("config") or {}
    return config.get("materialized") == "incremental" and any(
        CHECK_HOOK in (hook.get("sql") or "") for hook in config.get("post-hook") or ())


def _parents(node: Node) -> list[str]:
    return list((node.get("depends_on") or {}).get("nodes") or ())


def _checkable(test: Node, nodes: Mapping[str, Node]) -> bool:
    """Whether the builds of the models that write the rows `test` reads check it as its node would."""
    attached = nodes.get(test.get("attached_node") or "")
    config = test.get("config") or {}
    if attached is None or _parents(test) != [attached["unique_id"]] or any(
            config.get(key) != value for key, value in _DEFAULT_OUTCOME.items()):
        return False
    if _checks_its_rows(attached):
        return True
    parents = _parents(attached)
    return ((attached.get("config") or {}).get("materialized") == "view" and bool(parents)
            and all(_checks_its_rows(nodes.get(parent)) for parent in parents))


def row_rule_exclusions(manifest: Mapping[str, Any], sources: Collection[str]) -> tuple[str, ...]:
    """The `--exclude` terms that leave the row rules downstream of the source tables `sources` (dbt unique
    ids) to their models' checks; () when one of those tests cannot be checked that way."""
    nodes = manifest.get("nodes") or {}
    for unique_id in downstream(nodes, sources):
        test = nodes.get(unique_id) or {}
        rule = (test.get("test_metadata") or {}).get("name")
        if (test.get("resource_type") == "test" and rule in ROW_RULES
                and str((test.get("config") or {}).get("severity")).lower() == "error"
                and not _checkable(test, nodes)):
            return ()
    return tuple(f"test_name:{rule},config.severity:error" for rule in ROW_RULES)
