"""Bounds on request features, declared in the view (``meta.fti.label.request_features`` entries
``{name, min, max}`` or ``{name, values}``): parsed strictly against the label model's declared types, each
bad declaration refused in one line naming the view, the entry and the fix; carried whole through the
champion pointer's JSON form of the view; and the project's own views declare theirs."""

import json

import pytest
from test_catalog_strict import _changed, _refused

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import RequestBound, catalog_from_manifest, load_catalog
from models_ml.training.champion_pointer import view_from_dict, view_to_dict

FIX = ("declare `{name: <column>, min: <number>, max: <number>}` (either end may be left out) or "
       "`{name: <column>, values: [...]}`")
WHERE = "meta.fti.label.request_features"


def _with_request_features(*entries, columns=None):
    """The small project with the label's request features replaced (and more label columns declared)."""
    def change(nodes, view):
        for model in ("label_user__churn", "spine_user__active"):
            declared = nodes[f"model.shop.{model}"]["columns"]
            for name, data_type in (columns or {"age": "integer", "spend": "double"}).items():
                declared[name] = {"name": name, "data_type": data_type}
        view["label"]["request_features"] = list(entries)
    return change


def test_bounds_and_bare_names_parse_in_declared_order():
    manifest = _changed(_with_request_features(
        {"name": "plan", "values": ["basic", "premium"]}, "age", {"name": "spend", "min": 0},
        {"name": "visits", "min": 1, "max": 99.5}))
    label = catalog_from_manifest(manifest).view("user_churn").label
    assert label.request_features == ("plan", "age", "spend", "visits")
    assert label.request_bounds == (RequestBound("plan", values=("basic", "premium")), RequestBound("spend", minimum=0),
                                    RequestBound("visits", minimum=1, maximum=99.5))


def test_a_bound_describes_and_checks_its_values_inclusive_at_both_ends():
    hour = RequestBound("hour", minimum=0, maximum=23)
    assert hour.describe() == "between 0 and 23"
    assert [hour.allows(v) for v in (-1, 0, 23, 23.5, 24)] == [False, True, True, False, False]
    assert RequestBound("d", minimum=0).describe() == "at least 0"
    assert RequestBound("d", maximum=5.5).describe() == "at most 5.5"
    plan = RequestBound("plan", values=("basic", "premium"))
    assert plan.describe() == "one of 'basic', 'premium'"
    assert plan.allows("basic") and not plan.allows("gold")


def test_bounds_round_trip_through_the_pointer_json_of_the_view():
    manifest = _changed(_with_request_features({"name": "plan", "values": ["basic"]}, {"name": "visits", "max": 9}))
    view = catalog_from_manifest(manifest).view("user_churn")
    assert view_from_dict(json.loads(json.dumps(view_to_dict(view)))) == view


def test_a_pointer_written_before_bounds_existed_reads_as_unbounded():
    view = catalog_from_manifest(_changed(_with_request_features("plan"))).view("user_churn")
    data = view_to_dict(view)
    del data["label"]["request_bounds"]
    assert view_from_dict(data).label.request_bounds == ()


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "age", "range": [0, 9]},
     f"unknown key {WHERE}[0].range; known: name, min, max, values"),
    ({"min": 0}, f"{WHERE}[0] needs `name: <column>`; {FIX}"),
    (7, f"{WHERE}[0] must be a column name or a mapping, got 7; {FIX}"),
    ({"name": "age"}, f"{WHERE}[0] (age) declares no bound; list the bare column name or {FIX}"),
    ({"name": "age", "min": 9, "max": 1}, f"{WHERE}[0] (age) has min 9 above max 1; declare min <= max"),
    ({"name": "age", "min": "0"}, f"{WHERE}[0] (age).min must be a finite number, got '0'"),
    ({"name": "age", "max": True}, f"{WHERE}[0] (age).max must be a finite number, got True"),
    ({"name": "age", "max": float("inf")}, f"{WHERE}[0] (age).max must be a finite number, got inf"),
    ({"name": "age", "min": None}, f"{WHERE}[0] (age).min must be a finite number, got None"),
    ({"name": "plan", "min": 0},
     f"{WHERE}[0] (plan) has min/max but is declared 'varchar', not a number; bound a text column with `values: [...]`"),
    ({"name": "age", "min": 0, "values": [1]}, f"{WHERE}[0] (age) declares values and min/max; {FIX}"),
    ({"name": "plan", "values": []}, f"{WHERE}[0] (plan).values must be a non-empty list, got []"),
    ({"name": "plan", "values": "basic"}, f"{WHERE}[0] (plan).values must be a non-empty list, got 'basic'"),
    ({"name": "plan", "values": ["basic", 1]},
     f"{WHERE}[0] (plan).values must be texts (the column is varchar), got 1"),
    ({"name": "age", "values": [1, "2"]}, f"{WHERE}[0] (age).values must be integers (the column is integer), got '2'"),
    ({"name": "age", "values": [1, True]}, f"{WHERE}[0] (age).values must be integers (the column is integer), got True"),
    ({"name": "spend", "values": [1.5]},
     f"{WHERE}[0] (spend).values is declared on a double column; values are for text and integer columns "
     "(bound a number with min/max)"),
    ({"name": "plan", "values": ["basic", "premium", "basic"]}, f"{WHERE}[0] (plan).values lists basic more than once"),
])
def test_a_bad_declaration_is_refused_in_one_line_naming_the_entry_and_the_fix(entry, message):
    assert _refused(_with_request_features(entry)) == f"feature view user_churn: {message}"


def test_a_bounded_column_the_label_lacks_is_refused_like_any_request_feature():
    refused = _refused(_with_request_features({"name": "agee", "min": 0}))
    assert refused.startswith("feature view user_churn: meta.fti.label.request_features 'agee' is not a column of "
                              "label model label_user__churn")


def test_the_project_views_declare_their_request_features_bounds():
    catalog = load_catalog(load_settings())
    bounds = {view: {b.name: b for b in catalog.view(view).label.request_bounds}
              for view in ("flight_delay", "card_fraud", "customer_churn")}
    flights = bounds["flight_delay"]
    assert flights["scheduled_hour_local"] == RequestBound("scheduled_hour_local", minimum=0, maximum=23)
    assert flights["scheduled_weekday_local"] == RequestBound("scheduled_weekday_local", minimum=1, maximum=7)
    assert not flights["distance_miles"].allows(-5) and flights["distance_miles"].allows(2454)
    assert not bounds["card_fraud"]["amount"].allows(0) and bounds["card_fraud"]["merchant_category"].allows("grocery")
    assert bounds["customer_churn"]["plan"].values == ("basic", "standard", "premium")
    assert not bounds["customer_churn"]["tenure_days"].allows(-1)
