"""Time warnings of the real service on the flights slice: a prediction whose features come from after its
``prediction_at`` (the store keeps only each entity's latest row) says so per group (``features_from_future``),
and one dated past the store's data says which groups every entity misses because the store's newest row is
older than their TTL (``store_older_than_ttl``); both are counted in ``fti_online_warnings``. Within the
store's data only rows after the request's time are warned of."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from fti_testing import copy_home
from online_testing import MODEL, ServerThread, spine_requests
from prometheus_client.parser import text_string_to_metric_families

from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.store import UTC, open_online_store
from models_ml.training.champion_pointer import read_pointer

pytestmark = pytest.mark.slow
TTL_GROUPS = ["fg_airport__weather", "fg_carrier__delay_stats", "fg_route__delay_stats", "fg_plane__delay_stats"]


@pytest.fixture(scope="module")
def home(served_home, tmp_path_factory):
    return copy_home(served_home, tmp_path_factory.mktemp("time_warnings") / "home")


@pytest.fixture(scope="module")
def server(home):
    with ServerThread(create_app(home, poll_seconds=0.2, log_predictions=False)) as running:
        yield running


@pytest.fixture(scope="module")
def item(home):
    return {k: v for k, v in spine_requests(home, 1)[0].items() if k != "prediction_at"}


@pytest.fixture(scope="module")
def newest(home) -> dict[str, dt.datetime]:
    """The store's newest event time per group of the view (by group name)."""
    with open_online_store(home, "sqlite", create=False) as store:
        records = store.freshness()
    return {group.split(":")[0]: record.latest_event_at for group, record in records.items()}


def predict(server, item, **change) -> dict:
    response = httpx.post(f"{server.url}/predict/{MODEL}", json={**item, **change})
    assert response.status_code == 200, response.text
    return response.json()


def warnings_counted(server) -> dict[tuple[str, str], float]:
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    family = families.get("fti_online_warnings")
    return {} if family is None else {(s.labels["group"], s.labels["warning"]): s.value for s in family.samples
                                      if s.name == "fti_online_warnings_total" and s.labels["model"] == MODEL}


def test_features_from_after_prediction_at_are_warned_per_group(server, item):
    before = warnings_counted(server)
    body = predict(server, item, prediction_at="2013-01-02T12:00:00+00:00")  # the store holds 10 January's rows
    future = [group for group, fresh in body["freshness"].items() if fresh and fresh["age_seconds"] < 0]
    assert future, body  # the slice's rows are days after 2 January
    assert [w["group"] for w in body["warnings"]] == future
    first = body["warnings"][0]
    event_at = dt.datetime.fromisoformat(first["event_at"])
    assert first["code"] == "features_from_future" and first["event_at"] == body["freshness"][first["group"]]["event_at"]
    days = (event_at - dt.datetime(2013, 1, 2, 12, tzinfo=UTC)).total_seconds() / 86_400
    assert first["message"] == (
        f"{first['group']}: the row used is from {first['event_at']}, {days:.1f} days after as_of; the online store "
        "keeps only each entity's latest row, so an earlier prediction_at gets later features (score history "
        "with batch inference)").replace(".0 days", " days")
    after = warnings_counted(server)
    for group in future:
        key = (f"{group}:v1", "features_from_future")
        assert after[key] == before.get(key, 0) + 1


def test_a_request_past_the_store_data_names_each_group_older_than_its_ttl(server, home, item):
    body = predict(server, item)  # no prediction_at: now, years after 2013
    assert body["missing_groups"] == TTL_GROUPS  # plane attributes have no TTL
    assert [(w["code"], w["group"]) for w in body["warnings"]] == [("store_older_than_ttl", g) for g in TTL_GROUPS]
    weather = body["warnings"][0]
    assert weather["message"] == (
        f"fg_airport__weather: the store's newest row is from {weather['event_at']}, older than the group's TTL "
        "(3 hours) at as_of, so every entity misses these features; materialize the store, or send a "
        "prediction_at within its data")
    assert warnings_counted(server)[("fg_route__delay_stats:v1", "store_older_than_ttl")] >= 1


def test_within_the_store_data_only_rows_after_as_of_are_warned(server, home, newest):
    view = read_pointer(home, MODEL).view
    groups = {ref.group.name: ref.group for ref in view.features}
    # a minute after the last weather observation (the shortest TTL): within every TTL group's data
    as_of = newest["fg_airport__weather"] + dt.timedelta(minutes=1)
    assert all(as_of - newest[name] <= g.ttl for name, g in groups.items() if g.ttl is not None), newest
    items = spine_requests(home, 20)
    response = httpx.post(f"{server.url}/predict/{MODEL}/batch",
                          json=[{**item, "prediction_at": as_of.isoformat()} for item in items])
    predictions = response.json()["predictions"]
    for body in predictions:
        future = [group for group, fresh in body["freshness"].items() if fresh and fresh["age_seconds"] < 0]
        assert [(w["code"], w["group"]) for w in body["warnings"]] == [("features_from_future", g) for g in future]
    clean = [body for body in predictions if not body["warnings"]]
    assert clean, predictions  # most flights' rows are all before as_of
    assert all(fresh is None or fresh["age_seconds"] >= 0 for body in clean for fresh in body["freshness"].values())


def test_a_batch_warns_per_prediction(server, item):
    batch = [{**item, "prediction_at": "2013-01-02T12:00:00+00:00"}, item]
    response = httpx.post(f"{server.url}/predict/{MODEL}/batch", json=batch)
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert {w["code"] for w in first["warnings"]} == {"features_from_future"}
    assert {w["code"] for w in second["warnings"]} == {"store_older_than_ttl"}
