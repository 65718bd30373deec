"""Batch inference scores the present: tomorrow's flights from the published schedule, before they depart,
with the request features the label will carry; the same rows are joined to their outcomes once they land."""

from __future__ import annotations

import datetime as dt

import pytest
from fti_testing import SLICE_END, land, query, ticking_clock

from models_ml.core.time import day_window
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.inference.batch import predict as pr
from models_ml.inference.batch.outcomes import daily_outcomes
from models_ml.inference.batch.pipeline import predict_window
from models_ml.offline.store import opened
from models_ml.training import pipeline as tp

TOMORROW = SLICE_END + dt.timedelta(days=1)
SPINE, LABEL = "spines.spine_flight__scheduled", "labels.label_flight__departure_delay"
SMALL = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "min_data_per_group": 10,
         "early_stopping_rounds": 10}
LENIENT = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0, "champion_tolerance": 1.0}


def _local_day(column: str) -> str:
    return f"({column} at time zone 'America/New_York')::date"


def test_the_schedule_of_tomorrow_is_published_with_today_and_has_no_outcome_yet(built_home):
    spine_days = dict(query(built_home, f"select {_local_day('scheduled_departure_at')}, count(*) from {SPINE} "
                                        "group by 1"))
    label_days = dict(query(built_home, f"select {_local_day('scheduled_departure_at')}, count(*) from {LABEL} "
                                        "group by 1"))
    assert max(spine_days) == TOMORROW and max(label_days) == SLICE_END
    assert spine_days[TOMORROW] > 800 and TOMORROW not in label_days


def test_the_spine_carries_the_labels_keys_and_request_features_for_the_same_flight(built_home):
    view = load_catalog(built_home).view("flight_delay")
    columns = [c for c in dict.fromkeys([*view.label.entity, view.label.spine_time, view.label.event_time,
                                         *view.label.request_features,
                                         *(k for ref in view.features for k in ref.join_keys)])]
    listed = ", ".join(columns)
    both, differing = query(built_home, f"""
        select count(*), count(*) filter (where row({listed}) is distinct from
                                           (select row({listed}) from {LABEL} l where l.flight_id = s.flight_id))
        from {SPINE} s where flight_id in (select flight_id from {LABEL})""")[0]
    assert both > 8000 and differing == 0


def test_a_window_without_scheduled_flights_fails_and_names_the_range(built_home):
    view = load_catalog(built_home).view("flight_delay")
    with opened(built_home, read_only=True) as store, pytest.raises(pr.EmptyWindow) as refusal:
        pr.load_features(store, view, day_window("2013-03-01", 1))
    assert "spines.spine_flight__scheduled has no row with scheduled_departure_at in [2013-03-01 00:00" in str(
        refusal.value)


@pytest.mark.slow
def test_tomorrows_flights_are_scored_tonight_and_later_joined_to_their_outcomes(scratch_home):
    plan = tp.plan_training(scratch_home, "flight_delay", start="2013-01-01", end="2013-01-09",
                            fractions=[0.6, 0.2, 0.2], overrides=SMALL, gate_overrides=LENIENT)
    assert tp.run_training(scratch_home, plan).alias == "champion"
    window = day_window(TOMORROW, 1, "America/New_York")  # the New York day whose schedule was published
    scheduled = query(scratch_home, f"select count(*) from {SPINE} where scheduled_departure_at >= ? "
                                    "and scheduled_departure_at < ?", [window.start, window.end])[0][0]

    tonight = predict_window(scratch_home, "flight_delay", window)
    assert tonight.rows == scheduled > 500
    assert query(scratch_home, f"select count(*) from {LABEL} where scheduled_departure_at >= ?",
                 [window.start])[0][0] == 0  # no outcome of these flights exists yet
    with opened(scratch_home, read_only=True) as store:
        view = load_catalog(scratch_home).view("flight_delay")
        (before,) = daily_outcomes(store, view, pr.predictions_relation("flight_delay"), "America/New_York")
    assert (before.day, before.scored, before.with_outcome, before.roc_auc) == (TOMORROW, scheduled, 0, None)

    land(scratch_home, TOMORROW, ticking_clock(dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)))
    build(scratch_home, ["build", "--select", *load_catalog(scratch_home).domain("flights").dbt_selection.split()])
    with opened(scratch_home, read_only=True) as store:
        (after,) = daily_outcomes(store, view, pr.predictions_relation("flight_delay"), "America/New_York")
    assert after.scored == scheduled and after.with_outcome >= 0.99 * scheduled
    assert after.roc_auc is not None and 0.5 < after.roc_auc <= 1.0
    # the predictions written tonight are untouched by the landing: scored before the outcome existed
    assert query(scratch_home, 'select count(distinct scored_at) from predictions."flight_delay"')[0][0] == 1
