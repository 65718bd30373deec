"""A DuckDB daily run checks the row rules inside the models that write their rows (macros/row_checks.sql):
exactly the tests it leaves out of dbt's selection, no more and no fewer, and only where every such test can
be checked that way (models_ml.features.row_checks). What a check catches, and that a failing check leaves
its model's table as it was, is shown beside the test nodes in test_written_window.py.
"""

import copy
import dataclasses
import datetime as dt

import pytest
from fti_testing import checked_in_models, land, ticking_clock

from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.features.pipeline import TEST_WRITTEN_WINDOW_VAR, row_rules_checked_in_models
from models_ml.features.row_checks import CHECK_WRITTEN_ROWS_VAR, ROW_RULES, row_rule_exclusions

def feeding_sources(manifest: dict, source: str) -> list[str]:
    return [uid for uid, node in manifest["sources"].items() if node["source_name"] == source]


def test_flights_and_fraud_check_their_row_rules_in_their_models_and_churn_cannot(built_home):
    catalog = load_catalog(built_home)
    terms = {name: row_rules_checked_in_models(built_home, catalog, catalog.domain(name))
             for name in ("flights", "fraud", "churn")}
    assert terms["flights"] == terms["fraud"] == tuple(
        f"test_name:{rule},config.severity:error" for rule in ROW_RULES)
    # churn's landed days are a view over views: no model's build writes its rows, so its tests stay nodes
    assert terms["churn"] == ()
    # Spark's tables take no transaction that a failed check could roll back: every test stays a node
    on_spark = dataclasses.replace(built_home, engine="spark")
    assert row_rules_checked_in_models(on_spark, catalog, catalog.domain("flights")) == ()


def test_a_row_rule_with_a_threshold_keeps_its_domain_on_test_nodes(built_home):
    import json

    manifest = json.loads(built_home.manifest_path.read_text())
    sources = feeding_sources(manifest, "nycflights")
    assert row_rule_exclusions(manifest, sources)
    changed = copy.deepcopy(manifest)
    test = next(node for node in changed["nodes"].values() if node["resource_type"] == "test"
                and node["name"].startswith("not_null_fg_carrier__delay_stats_v1"))
    test["config"]["error_if"] = "> 10"  # an outcome a model's check does not decide
    assert row_rule_exclusions(changed, sources) == ()
    test["config"]["error_if"], test["config"]["severity"] = "!= 0", "warn"  # a warning stays a node
    assert row_rule_exclusions(changed, sources)


@pytest.mark.slow
def test_the_models_check_exactly_the_tests_the_daily_build_leaves_out(scratch_home):
    catalog = load_catalog(scratch_home)
    daily = ["build", "--select", *catalog.domain("flights").dbt_selection.split()]
    land(scratch_home, dt.date(2013, 1, 11), ticking_clock(dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)))
    as_nodes = build(scratch_home, daily, {TEST_WRITTEN_WINDOW_VAR: True})
    terms = row_rules_checked_in_models(scratch_home, catalog, catalog.domain("flights"))
    in_models = build(scratch_home, [*daily, "--exclude", *terms],
                      {TEST_WRITTEN_WINDOW_VAR: True, CHECK_WRITTEN_ROWS_VAR: True})

    def nodes(run) -> set[str]:
        return {o.name for o in run.outcomes if o.resource_type == "test"}

    checked = checked_in_models(scratch_home)
    assert checked and not checked & nodes(in_models)
    assert checked | nodes(in_models) == nodes(as_nodes)
    assert any(name.startswith("relationships_") for name in nodes(in_models))  # two models' test: a node
