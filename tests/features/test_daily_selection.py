"""A daily run after a successful one on the same project files builds only what the newly landed data
feeds: models fed only by raw tables with nothing landed since are not run again, the tests on views still
run and still hold back what depends on them, and the published tables are those of a full refresh."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from fti_testing import checked_in_models, copy_home, query, table_differences

from models_ml.core.settings import PROJECT_ROOT
from models_ml.definitions.catalog import SourceTable, load_catalog
from models_ml.features import pipeline as fp
from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.features.landing import ledger_by_table, unchanged_tables
from models_ml.features.row_checks import CHECK_WRITTEN_ROWS_VAR
from models_ml.offline.store import opened

# What a model must not read for a daily run to leave it out when its inputs did not change.
CLOCK_OR_CHANCE = re.compile(r"\b(current_timestamp|current_date|now\s*\(|get_current_time|random\s*\(|uuid\s*\(|"
                             r"gen_random_uuid|run_started_at|modules\.datetime)", re.IGNORECASE)
REFERENCE = {"planes", "airlines", "airports"}  # the flights tables landed once
ROUTES = "features.fg_route__delay_stats_v1"


def names(run, kind: str) -> set[str]:
    """The nodes of one kind the run built or tested, a versioned model as <name>_v<n>."""
    return {o.unique_id.split(".", 2)[2].replace(".v", "_v") for o in run.outcomes if o.resource_type == kind}


def test_no_model_reads_the_clock_or_draws_random_numbers():
    project = PROJECT_ROOT / "dbt_project"
    found = [f"{path.relative_to(project)}:{number}: {line.strip()}"
             for folder in ("models", "macros") for path in sorted((project / folder).rglob("*.sql"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if CLOCK_OR_CHANCE.search(line)]
    assert not found, ("a daily run leaves out models whose inputs did not change, so a model must read only "
                       "its inputs (README, 'What a daily run builds'): " + "; ".join(found))


def test_the_ledger_says_which_raw_tables_got_nothing_since_a_build(scratch_home):
    with opened(scratch_home, read_only=True) as store:
        built_from = ledger_by_table(store)
    assert REFERENCE | {"flights", "weather", "schedule"} <= set(built_from)
    fp.land_raw(scratch_home, dt.date(2013, 1, 11), "flights")
    with opened(scratch_home, read_only=True) as store:
        quiet = unchanged_tables(ledger_by_table(store), built_from)
    assert REFERENCE <= quiet and not {"flights", "weather", "schedule"} & quiet


def test_the_selection_is_what_tables_with_new_batches_feed(built_home):
    catalog = load_catalog(built_home)
    flights = catalog.domain("flights")
    assert fp.changed_by_landing(catalog, flights, set()) is None  # nothing quiet: the whole domain
    assert fp.changed_by_landing(catalog, flights, REFERENCE) == (
        "source:nycflights.flights+ source:nycflights.weather+ source:nycflights.schedule+")
    every_own_table = {t.identifier for t in catalog.source_tables if t.source in flights.sources}
    assert fp.changed_by_landing(catalog, flights, every_own_table) is None  # nothing that feeds it changed

    # Another source that feeds the domain, which landing does not track, counts as changed: what of the
    # domain it feeds is built. A source that feeds no flights model (the churn data) adds nothing.
    crm = [SourceTable("crm", name, "main", name, frozenset({"flights"})) for name in ("accounts", "owners")]
    with_crm = dataclasses.replace(catalog, source_tables=(*catalog.source_tables, *crm))
    assert fp.changed_by_landing(with_crm, flights, REFERENCE).split()[-1] == "source:crm+,source:nycflights+"
    assert fp.changed_by_landing(with_crm, flights, every_own_table) == "source:crm+,source:nycflights+"
    assert not [t for t in catalog.source_tables if t.source == "churn" and "flights" in t.feeds]

    terms = fp.changed_by_landing(catalog, flights, REFERENCE).split()
    args, dbt_vars = fp.dbt_build_command(flights.dbt_selection, False,
                                          fp.BuildScope(proven=True, fed_by_new_data=" ".join(terms)))
    assert args == ["build", "--select", *terms, "--exclude", "config.materialized:view",
                    "--indirect-selection", "empty", "--no-write-json", "--exclude-resource-type", "unit_test"]
    assert dbt_vars == {fp.TEST_WRITTEN_WINDOW_VAR: True, CHECK_WRITTEN_ROWS_VAR: True}


class RecordedBuilds:
    """The pipeline's own build step, keeping each dbt run (a failing one too)."""

    def __init__(self):
        self.runs = []

    def __call__(self, settings, full_refresh, select):
        try:
            self.runs.append(fp.build_features(settings, full_refresh, select))
        except DbtBuildError as error:
            self.runs.append(error.run)
            raise
        return self.runs[-1]


def assert_same_as_a_full_refresh(settings, domain: str, target) -> None:
    """Build the same raw rows in one go at `target` and compare every table the domain publishes."""
    full = copy_home(settings, target)
    build(full, ["build", "--select", *load_catalog(full).domain(domain).dbt_selection.split(), "--full-refresh"])
    for relation in fp.published_relations(load_catalog(full), domains=[domain]):
        count_daily, count_full, only_daily, only_full = table_differences(
            settings.warehouse_path, full.warehouse_path, relation)
        assert count_full > 0, relation
        assert (count_daily, only_daily, only_full) == (count_full, 0, 0), relation


@pytest.mark.slow
def test_a_daily_run_builds_what_the_day_feeds_and_publishes_a_full_refresh(built_home, tmp_path):
    settings = copy_home(built_home, tmp_path / "daily")
    build_recorded = RecordedBuilds()
    runs = build_recorded.runs
    steps = fp.FeatureSteps(build=build_recorded)
    for day in (11, 12):
        fp.run_feature_pipeline(settings, dt.date(2013, 1, day), domain="flights", steps=steps)
    whole, daily = runs  # no run was recorded before the first: it builds the whole domain
    assert {"stg_nycflights__planes", "fg_plane__attributes_v1"} <= names(whole, "model")
    assert not {"base_nycflights__planes", "base_nycflights__airlines", "base_nycflights__airports"} & names(
        daily, "model")
    assert {"base_nycflights__flights", "fg_route__delay_stats_v1"} <= names(daily, "model")
    # views (staging, the quarantine) stay as the last run left them; their tests run, as nodes or (the row
    # rules) checked in the base models that append their rows
    assert not [n for n in names(daily, "model") if n.startswith(("stg_", "quarantined_rows__"))]
    view_tests = {o.name for o in whole.outcomes if o.resource_type == "test"
                  and ("stg_nycflights__flights" in o.name or "quarantined_rows__" in o.name)}
    daily_tests = {o.name for o in daily.outcomes if o.resource_type == "test"}
    assert any("quarantined_rows__" in n for n in view_tests)
    assert view_tests <= daily_tests | checked_in_models(settings) and checked_in_models(settings)
    assert not names(daily, "unit_test")

    assert_same_as_a_full_refresh(settings, "flights", tmp_path / "full")

    # A failing test on a view still holds back the features it feeds.
    def land_a_stray_origin(s, through, domain, run_id):
        landed = fp.land_raw(s, through, domain, run_id)
        with opened(s) as store:
            store.execute("update raw.flights set origin = 'BOS' where _batch_id = '2013-01-13'")
        return landed

    published = query(settings, f"select count(*) from {ROUTES}")
    with pytest.raises(DbtBuildError, match="accepted_values_stg_nycflights__flights"):
        fp.run_feature_pipeline(settings, dt.date(2013, 1, 13), domain="flights",
                                steps=fp.FeatureSteps(land=land_a_stray_origin, build=build_recorded))
    assert "base_nycflights__planes" not in names(runs[-1], "model")  # still the daily selection
    assert "fg_route__delay_stats" in {o.name for o in runs[-1].skipped()}
    assert query(settings, f"select count(*) from {ROUTES}") == published


@pytest.mark.slow
def test_fraud_days_with_chargebacks_only_rebuild_what_chargebacks_feed(built_home, tmp_path):
    # The fixtures' transactions end on 2013-01-10; chargebacks keep arriving after it (their label clock),
    # and the loader lands an empty batch of transactions each day.
    settings = copy_home(built_home, tmp_path / "daily")
    build_recorded = RecordedBuilds()
    outcomes = [fp.run_feature_pipeline(settings, dt.date(2013, 1, day), domain="fraud",
                                        steps=fp.FeatureSteps(build=build_recorded)).build for day in range(11, 17)]
    assert outcomes.count("built") == len(build_recorded.runs)
    whole, *daily = build_recorded.runs
    assert daily and [o for o in outcomes if o.startswith("skipped: nothing new since run")]  # empty batches only
    assert "fg_card__activity_v1" in names(whole, "model")
    for run in daily:
        built = names(run, "model")
        assert "base_fraud__chargebacks" in built
        assert not {"base_fraud__transactions", "base_fraud__cards", "fg_card__activity_v1",
                    "fg_card__profile_v1"} & built  # the merchants' activity counts chargebacks
    assert_same_as_a_full_refresh(settings, "fraud", tmp_path / "full")
