"""The feature pipeline flow under Prefect's test harness: lands, builds, records; fails loudly on bad data."""

import datetime as dt

import ibis
import pytest
from fti_testing import latest_artifact_markdown, query

from flows.feature_pipeline import feature_pipeline
from models_ml.features.dbt_runner import DbtBuildError
from models_ml.features.landing import land_batch
from models_ml.offline.store import opened


def test_flow_lands_the_next_day_builds_and_records_the_run(prefect_harness, scratch_home):
    before = query(scratch_home, "select count(*) from labels.label_flight__departure_delay")[0][0]

    result = feature_pipeline(domain="flights", home=str(scratch_home.home))

    assert result["landed_through"] == "2013-01-11"
    assert result["rows_landed"]["flights"] > 0
    after = query(scratch_home, "select count(*) from labels.label_flight__departure_delay")[0][0]
    assert after == before + result["rows_landed"]["flights"]
    status, rows_landed = query(
        scratch_home, "select status, rows_landed->>'flights' from ops.feature_pipeline_runs where run_id = ?",
        [result["run_id"]],
    )[0]
    assert status == "succeeded" and int(rows_landed) == result["rows_landed"]["flights"]
    artifact = latest_artifact_markdown("feature-pipeline-run")
    assert result["run_id"] in artifact and "**succeeded**" in artifact
    assert f"| flights | {result['rows_landed']['flights']:,} |" in artifact

    again = feature_pipeline(through="2013-01-11", domain="flights", home=str(scratch_home.home))
    assert again["rows_landed"] == {}
    assert query(scratch_home, "select count(*) from labels.label_flight__departure_delay")[0][0] == after


def test_a_failing_test_stops_the_publish_and_names_the_test_and_row(prefect_harness, scratch_home):
    """A flight from outside New York passes row validation but fails the origin's accepted_values test."""
    features_before = query(scratch_home, "select count(*), max(event_at) from features.fg_carrier__delay_stats_v1")
    with opened(scratch_home) as store:
        flights = store.table("raw", "flights")
        landed = flights.filter(flights._batch_id == "2013-01-10").limit(1).drop("_loaded_at", "_batch_id")
        land_batch(store, "flights", "unknown-carrier", store.to_arrow(landed.mutate(origin=ibis.literal("BOS"))),
                   clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))

    with pytest.raises(DbtBuildError) as failure:
        feature_pipeline(through="2013-01-10", domain="flights", home=str(scratch_home.home))

    message = str(failure.value)
    assert "accepted_values_stg_nycflights__flights_origin_airport_code" in message
    assert "BOS" in message
    assert "fg_carrier__delay_stats" in message  # named as not published
    assert query(scratch_home, "select count(*), max(event_at) from features.fg_carrier__delay_stats_v1") == features_before
    (status, error) = query(scratch_home, "select status, error from ops.feature_pipeline_runs order by started_at desc limit 1")[0]
    assert status == "failed" and "accepted_values" in error


def test_without_a_domain_the_pipeline_names_the_domains_and_records_nothing(scratch_home):
    from models_ml.definitions.catalog import CatalogError
    from models_ml.features.pipeline import run_feature_pipeline

    runs = query(scratch_home, "select count(*) from ops.feature_pipeline_runs")[0][0] if query(
        scratch_home, "select count(*) from information_schema.tables where table_name = 'feature_pipeline_runs'"
    )[0][0] else 0
    with pytest.raises(CatalogError, match=r"which domain\? the project has \d \(.*flights, fraud.*\): name one "
                                           r"with --domain"):
        run_feature_pipeline(scratch_home)
    with pytest.raises(CatalogError, match=r"no domain 'flight' \(known: .*flights"):
        run_feature_pipeline(scratch_home, domain="flight")
    recorded = query(scratch_home, "select count(*) from information_schema.tables where table_name = "
                                   "'feature_pipeline_runs'")[0][0]
    assert (query(scratch_home, "select count(*) from ops.feature_pipeline_runs")[0][0] if recorded else 0) == runs
