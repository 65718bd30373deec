"""The catalog reads feature groups and views from dbt's manifest, and names what it cannot use."""

import datetime as dt
import json

import pytest

from fti.cli import main
from models_ml.definitions.catalog import (
    CatalogError,
    catalog_from_manifest,
    load_catalog,
    parse_ttl,
)


@pytest.fixture(scope="module")
def manifest(built_home) -> dict:
    load_catalog(built_home)
    return json.loads(built_home.manifest_path.read_text())


def test_groups_carry_entity_event_time_ttl_version_and_typed_features(manifest):
    catalog = catalog_from_manifest(manifest)
    route = catalog.group("fg_route__delay_stats")
    assert route.version == 1 and route.latest_version == 1
    assert route.qualified_relation == "features.fg_route__delay_stats_v1"
    assert route.entity == ("origin_airport_code", "destination_airport_code")
    assert route.event_time == "event_at" and route.created_time == "loaded_at"
    assert route.ttl == dt.timedelta(days=7) and route.online
    assert {f.name: f.data_type for f in route.features}["flight_count_7d"] == "integer"
    assert "event_at" not in {f.name for f in route.features}
    assert catalog.group("fg_plane__attributes").ttl is None


def test_feature_view_resolves_groups_keys_and_names(manifest):
    view = catalog_from_manifest(manifest).view("flight_delay")
    assert view.label.qualified_relation == "labels.label_flight__departure_delay"
    assert view.label.spine_time == "prediction_at" and view.label.target == "is_delayed"
    weather = next(r for r in view.features if r.group.name == "fg_airport__weather")
    assert weather.join_keys == {"origin_airport_code": "airport_code"}
    assert "origin_weather_temperature_f" in view.feature_columns
    assert len(view.feature_columns) == len(set(view.feature_columns))
    assert view.group_versions()["fg_carrier__delay_stats"] == 1


def _with_group_meta(manifest: dict, name: str, **changes) -> dict:
    broken = json.loads(json.dumps(manifest))
    node = next(n for n in broken["nodes"].values() if n["name"] == name and n["resource_type"] == "model")
    node["config"]["meta"]["fti"].update(changes)
    return broken


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_time": None}, "fg_carrier__delay_stats: meta.fti.event_time is missing"),
        ({"entity": ["carrier"]}, "names column 'carrier'"),
        ({"ttl": "soon"}, "ttl 'soon' is not like"),
    ],
)
def test_bad_group_declarations_are_named(manifest, changes, message):
    with pytest.raises(CatalogError, match=message):
        catalog_from_manifest(_with_group_meta(manifest, "fg_carrier__delay_stats", **changes))


def test_unknown_group_and_version_are_named(manifest):
    catalog = catalog_from_manifest(manifest)
    with pytest.raises(CatalogError, match="no feature group 'fg_nope'"):
        catalog.group("fg_nope")
    with pytest.raises(CatalogError, match="has no version 7"):
        catalog.group("fg_carrier__delay_stats", 7)


def test_parse_ttl():
    assert parse_ttl("3 hours", "x") == dt.timedelta(hours=3)
    assert parse_ttl("1 day", "x") == dt.timedelta(days=1)
    assert parse_ttl(None, "x") is None


def test_cli_lists_and_shows_groups_with_row_counts(built_home, capsys):
    assert main(["--home", str(built_home.home), "features", "list"]) == 0
    listing = capsys.readouterr().out
    assert "fg_carrier__delay_stats" in listing and "flight_delay" in listing
    count = next(line for line in listing.splitlines() if line.startswith("fg_plane__attributes"))
    assert "3,322" in count

    assert main(["--home", str(built_home.home), "features", "show", "fg_airport__weather"]) == 0
    shown = capsys.readouterr().out
    assert "precipitation_3h_in" in shown and "ttl: 3:00:00" in shown and "latest event: 2013-01-11" in shown

    assert main(["--home", str(built_home.home), "features", "show", "fg_nope"]) == 2
    assert "no feature group 'fg_nope'" in capsys.readouterr().err


def test_a_group_has_a_unique_grain_only_when_a_dbt_test_proves_it(manifest):
    assert catalog_from_manifest(manifest).group("fg_route__delay_stats").unique_grain
    untested = json.loads(json.dumps(manifest))
    untested["nodes"] = {
        uid: node for uid, node in untested["nodes"].items()
        if not (node["resource_type"] == "test" and "fg_route__delay_stats" in (node.get("attached_node") or ""))
    }
    assert not catalog_from_manifest(untested).group("fg_route__delay_stats").unique_grain


def test_a_group_is_unique_per_entity_only_when_a_dbt_test_proves_it(manifest):
    catalog = catalog_from_manifest(manifest)
    attributes = catalog.group("fg_plane__attributes")  # `unique` on tail_number: one row per plane
    assert attributes.unique_entity and attributes.unique_grain
    assert not catalog.group("fg_plane__delay_stats").unique_entity  # unique per (plane, event time) only
    untested = json.loads(json.dumps(manifest))
    untested["nodes"] = {
        uid: node for uid, node in untested["nodes"].items()
        if not (node["resource_type"] == "test" and "fg_plane__attributes" in (node.get("attached_node") or ""))
    }
    assert not catalog_from_manifest(untested).group("fg_plane__attributes").unique_entity
    for config in ({"where": "year_built > 2000"}, {"error_if": ">10"}, {"severity": "warn"}):
        lenient = json.loads(json.dumps(manifest))
        for node in lenient["nodes"].values():
            if node["resource_type"] == "test" and "fg_plane__attributes" in (node.get("attached_node") or ""):
                node["config"] = {**(node.get("config") or {}), **config}
        assert not catalog_from_manifest(lenient).group("fg_plane__attributes").unique_entity, config
