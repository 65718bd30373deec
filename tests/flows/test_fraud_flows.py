"""The fraud example through the project's own flows: the feature pipeline lands and builds only the fraud
selection, and the training flow trains card_fraud on a snapshot with its on-demand features."""

from __future__ import annotations

import json

import pytest
from fti_testing import FRAUD_CONFIG, SLICE_END, query

from flows.feature_pipeline import feature_pipeline
from flows.training_pipeline import training

pytestmark = pytest.mark.slow


def test_feature_pipeline_lands_the_next_fraud_day_and_builds_only_fraud(prefect_harness, scratch_home):
    flights_before = query(scratch_home, "select count(*) from features.fg_carrier__delay_stats_v1")
    result = feature_pipeline(domain="fraud", home=str(scratch_home.home))

    assert result["landed_through"] == "2013-01-11"  # the day after the slice: chargebacks still arrive
    assert set(result["rows_landed"]) == {"fraud_transactions", "fraud_chargebacks"}
    assert result["rows_built"]["labels.label_transaction__fraud"] > 0
    assert query(scratch_home, "select count(*) from features.fg_carrier__delay_stats_v1") == flights_before
    (status,), = query(scratch_home, "select status from ops.feature_pipeline_runs where run_id = ?", [result["run_id"]])
    assert status == "succeeded"


def test_training_flow_trains_card_fraud_with_on_demand_features(prefect_harness, scratch_home):
    # The tiny dataset's labels are final for 27 November to 10 December (fraud on 4, 5 and 6 December too).
    summary = training(view="card_fraud", home=str(scratch_home.home), start=FRAUD_CONFIG.start.isoformat(),
                       end=SLICE_END.isoformat(), validation_start="2012-12-04", test_start="2012-12-05",
                       overrides={"min_data_in_leaf": 20}, promote=False)
    assert summary["alias"] == "challenger"
    assert sum(summary["rows"].values()) > 5_000
    spec = json.loads((scratch_home.models_dir / "card_fraud").glob("*/model_spec.json").__next__().read_text())
    features = spec["spec"]["features"]
    assert {"distance_from_previous_km", "seconds_since_previous", "amount_to_card_mean_ratio"} <= set(features)
    assert "card_last_transaction_at" not in features and "merchant_category" in spec["spec"]["categories"]
