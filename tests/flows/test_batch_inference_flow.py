"""The batch-inference flow on the real ten-day slice: train a champion with the training flow, then score days."""

from __future__ import annotations

import pytest
from fti_testing import latest_artifact_markdown, query

from models_ml.offline.store import opened

pytestmark = pytest.mark.slow

TABLE = 'predictions."flight_delay"'
SMALL = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "min_data_per_group": 10,
         "early_stopping_rounds": 10}
LENIENT = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0, "champion_tolerance": 1.0}


def flights_scheduled(settings, start: str, end: str) -> int:
    return query(settings, "select count(*) from labels.label_flight__departure_delay where scheduled_departure_at "
                           ">= ?::timestamptz and scheduled_departure_at < ?::timestamptz",
                 [f"{start} 00:00:00+00", f"{end} 00:00:00+00"])[0][0]


def test_flow_scores_days_idempotently_and_reports(prefect_harness, scratch_home):
    from flows.batch_inference import batch_inference
    from flows.training_pipeline import training

    home = str(scratch_home.home)
    trained = training(view="flight_delay", start="2013-01-01", end="2013-01-08", fractions=[0.6, 0.2, 0.2],
                       overrides=SMALL, gate_overrides=LENIENT, home=home)
    assert trained["alias"] == "champion"

    first = batch_inference(day="2013-01-08", days=2, home=home)
    expected = flights_scheduled(scratch_home, "2013-01-08", "2013-01-10")
    assert first["rows"] == expected > 1000
    assert (first["model_name"], first["model_version"], first["feature_view_version"]) == ("flight_delay", 1, 1)
    assert query(scratch_home, f"select count(*), count(distinct flight_id), count(score) from {TABLE}")[0] == (
        expected, expected, expected)
    flagged = query(scratch_home, f"select count(*) from {TABLE} where has_missing_features")[0][0]
    assert first["flagged_rows"] == flagged
    markdown = latest_artifact_markdown("batch-inference-flight-delay-champion")
    assert f"{expected:,}" in markdown and "flight_delay v1" in markdown and "mean score" in markdown

    again = batch_inference(day="2013-01-08", days=2, home=home)
    assert again["rows"] == expected and again["deleted"] == expected
    assert query(scratch_home, f"select count(*), count(distinct scored_at) from {TABLE}")[0] == (expected, 1)
    assert again["mean_score"] == pytest.approx(first["mean_score"])

    # No day: the first day with unscored flights (the slice's evening flights spill into 2013-01-11 UTC).
    following = batch_inference(home=home)
    assert following["window"][0].startswith("2013-01-10")
    assert following["rows"] == flights_scheduled(scratch_home, "2013-01-10", "2013-01-11")


def test_flow_refuses_a_model_whose_feature_versions_are_not_built(prefect_harness, scratch_home):
    from flows.batch_inference import batch_inference
    from flows.training_pipeline import training
    from models_ml.inference.batch.predict import PredictionError

    home = str(scratch_home.home)
    training(view="flight_delay", start="2013-01-01", end="2013-01-08", fractions=[0.6, 0.2, 0.2],
             overrides=SMALL, gate_overrides=LENIENT, home=home)
    with opened(scratch_home) as store:
        store.drop_table("features", "fg_plane__attributes_v1")
    with pytest.raises(PredictionError, match=r"fg_plane__attributes v1.*not built"):
        batch_inference(day="2013-01-08", home=home)
    tables = "select count(*) from information_schema.tables where table_schema = 'predictions'"
    assert query(scratch_home, tables)[0][0] == 0
