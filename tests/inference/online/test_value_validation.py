"""Request validation by value: the bounds a view declares on its request features (``min``/``max``,
``values``) travel in the champion pointer's feature view, and the service refuses a value outside them with
a 422 naming the field, the value and what is allowed; every number is finite float64 or int64 whatever the
bounds. First the request model itself (no server), then the real service on the flights slice."""

from __future__ import annotations

import json

import httpx
import pytest
from fti_testing import copy_home
from online_testing import MODEL, ServerThread, spine_requests

from models_ml.definitions.catalog import RequestBound
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.serving.schema import RequestRejected, parse_one, request_model, validate
from models_ml.training.champion_pointer import RequestField, read_pointer

FIELDS = [RequestField("hour", "int", True), RequestField("spend", "float", True), RequestField("plan", "str", False)]
BOUNDS = [RequestBound("hour", minimum=0, maximum=23), RequestBound("spend", minimum=0.01),
          RequestBound("plan", values=("basic", "premium"))]
NAMES = frozenset(f.name for f in FIELDS)


def _checked(body: bytes, bounds=BOUNDS):
    return validate(request_model("m", FIELDS, bounds), NAMES, [parse_one(body)], batch=False)


def _rejected(body: bytes, bounds=BOUNDS) -> dict:
    with pytest.raises(RequestRejected) as raised:
        _checked(body, bounds)
    return raised.value.body()


def test_values_within_the_bounds_pass_edges_included():
    assert _checked(b'{"hour": 0, "spend": 0.01, "plan": "basic"}') == [{"hour": 0, "spend": 0.01, "plan": "basic"}]
    assert _checked(b'{"hour": 23, "spend": 1e308}') == [{"hour": 23, "spend": 1e308, "plan": None}]


def test_each_value_outside_its_bound_is_named_with_the_value_and_the_bound():
    assert _rejected(b'{"hour": 99, "spend": -5, "plan": "gold"}') == {"detail": [
        {"loc": ["body", "hour"], "msg": "hour must be between 0 and 23, got 99", "type": "out_of_range"},
        {"loc": ["body", "spend"], "msg": "spend must be at least 0.01, got -5.0", "type": "out_of_range"},
        {"loc": ["body", "plan"], "msg": "plan must be one of 'basic', 'premium', got 'gold'",
         "type": "value_not_allowed"},
    ], "error_count": 3}


def test_a_long_refused_text_is_cut_in_the_message():
    body = _rejected(json.dumps({"hour": 1, "spend": 1, "plan": "x" * 500}).encode())
    assert body["detail"][0]["msg"] == f"plan must be one of 'basic', 'premium', got {repr('x' * 500)[:100]}..."


def test_without_bounds_numbers_are_still_int64_and_finite_float64():
    unbounded = ()
    assert _checked(b'{"hour": 9223372036854775807, "spend": -1e308}', unbounded)[0]["hour"] == 2**63 - 1
    assert _rejected(b'{"hour": 9223372036854775808, "spend": 1}', unbounded)["detail"][0]["type"] == "less_than_equal"
    huge = _rejected(b'{"hour": 1, "spend": 1' + b"0" * 400 + b"}", unbounded)["detail"]
    assert huge == [{"loc": ["body", "spend"], "msg": "Input should be a finite number within float64 range "
                                                     "(about ±1.8e308)", "type": "finite_number"}]
    assert _rejected(b'{"hour": 1, "spend": 1e400}', unbounded)["detail"][0]["type"] == "finite_number"
    assert _rejected(b'{"hour": 1, "spend": true}', unbounded)["detail"][0]["type"] == "float_type"
    assert _checked(b'{"hour": 1, "spend": 9223372036854775808}', unbounded)[0]["spend"] == float(2**63)


def test_a_bound_that_does_not_fit_the_field_kind_fails_the_load_not_a_request():
    with pytest.raises(ValueError, match=r"request field 'plan' \(str\) cannot be bounded to between 0 and 1"):
        request_model("m", FIELDS, [RequestBound("plan", minimum=0, maximum=1)])
    with pytest.raises(ValueError, match=r"request field 'hour' \(int\) cannot be bounded to one of 'a'"):
        request_model("m", FIELDS, [RequestBound("hour", values=("a",))])


# -- the service ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(served_home, tmp_path_factory):
    home = copy_home(served_home, tmp_path_factory.mktemp("values") / "home")
    with ServerThread(create_app(home, poll_seconds=0.2, log_predictions=False)) as running:
        running.home = home
        yield running


@pytest.fixture(scope="module")
def items(server):
    return spine_requests(server.home, 2)


@pytest.mark.slow
def test_the_published_pointer_carries_the_views_bounds(server):
    bounds = {b.name: b for b in read_pointer(server.home, MODEL).view.label.request_bounds}
    assert bounds["scheduled_hour_local"] == RequestBound("scheduled_hour_local", minimum=0, maximum=23)
    assert set(bounds) == {"scheduled_hour_local", "scheduled_weekday_local", "distance_miles"}


@pytest.mark.slow
@pytest.mark.parametrize(("change", "message"), [
    ({"scheduled_hour_local": 99}, "scheduled_hour_local must be between 0 and 23, got 99"),
    ({"scheduled_hour_local": -1}, "scheduled_hour_local must be between 0 and 23, got -1"),
    ({"scheduled_weekday_local": 0}, "scheduled_weekday_local must be between 1 and 7, got 0"),
    ({"distance_miles": -5}, "distance_miles must be between 1 and 12500, got -5"),
    ({"distance_miles": 2**62}, f"distance_miles must be between 1 and 12500, got {2**62}"),
])
def test_an_out_of_range_request_feature_is_422_naming_field_value_and_range(server, items, change, message):
    field = next(iter(change))
    response = httpx.post(f"{server.url}/predict/{MODEL}", json={**items[0], **change})
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": [{"loc": ["body", field], "msg": message, "type": "out_of_range"}],
                               "error_count": 1}


@pytest.mark.slow
def test_the_edges_of_the_declared_ranges_are_scored(server, items):
    for change in ({"scheduled_hour_local": 0}, {"scheduled_hour_local": 23}, {"scheduled_weekday_local": 7},
                   {"distance_miles": 1}, {"distance_miles": 12500}):
        response = httpx.post(f"{server.url}/predict/{MODEL}", json={**items[0], **change})
        assert response.status_code == 200, (change, response.text)


@pytest.mark.slow
def test_a_batch_names_the_item_and_scores_nothing(server, items):
    batch = [items[0], {**items[1], "scheduled_hour_local": 24, "distance_miles": 0}]
    response = httpx.post(f"{server.url}/predict/{MODEL}/batch", json=batch)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": [
        {"loc": ["body", 1, "scheduled_hour_local"], "msg": "scheduled_hour_local must be between 0 and 23, got 24",
         "type": "out_of_range"},
        {"loc": ["body", 1, "distance_miles"], "msg": "distance_miles must be between 1 and 12500, got 0",
         "type": "out_of_range"},
    ], "error_count": 2}
