"""The catalog reads feature groups and views from dbt's manifest, and names what it cannot use."""

import dataclasses
import datetime as dt
import json
import os

import pytest

from fti.cli import main
from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import (
    CatalogError,
    _changed_since_parsed,
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
        ({"entity": ["carrier"]}, "meta.fti.entity 'carrier' is not a column of model fg_carrier__delay_stats"),
        ({"ttl": "soon"}, "ttl 'soon' is not like"),
        ({"freshnes": "1 day"}, "fg_carrier__delay_stats: unknown key meta.fti.freshnes; known: entity, "),
        ({"freshness": "1 day"}, "fg_carrier__delay_stats: meta.fti.freshness must be a mapping of settings"),
    ],
)
def test_bad_group_declarations_are_named(manifest, changes, message):
    with pytest.raises(CatalogError, match=message):
        catalog_from_manifest(_with_group_meta(manifest, "fg_carrier__delay_stats", **changes))


def _with_view_meta(manifest: dict, change) -> dict:
    changed = json.loads(json.dumps(manifest))
    exposure = next(e for e in changed["exposures"].values() if e["name"] == "flight_delay")
    change(exposure["config"]["meta"]["fti"])
    return changed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: meta.update(trainig={}), "unknown key meta.fti.trainig; known: version, label, "
                                                "inference_spine, features, on_demand, training"),
        (lambda meta: meta["label"].update(categorical_request_features=[], weights="w"),
         r"unknown keys meta\.fti\.label\.categorical_request_features, meta\.fti\.label\.weights; known: model, "),
        (lambda meta: meta["features"][1].update(prefx="c_"),
         r"unknown key meta\.fti\.features\[1\]\.prefx; known: group, version, join_keys, prefix, features, "),
    ],
)
def test_unknown_view_keys_are_named(manifest, change, message):
    with pytest.raises(CatalogError, match=f"^feature view flight_delay: {message}"):
        catalog_from_manifest(_with_view_meta(manifest, change))


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
    assert "precipitation_3h_in" in shown and "ttl: 3 hours" in shown and "latest event: 2013-01-11" in shown

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


def test_the_catalog_is_reparsed_when_the_dbt_project_changed_after_its_manifest(tmp_path):
    project = tmp_path / "project"
    (project / "models" / "features").mkdir(parents=True)
    (project / "target").mkdir()
    model = project / "models" / "features" / "_features.yml"
    model.write_text("models: []\n")
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    settings = dataclasses.replace(load_settings(tmp_path / "home"), dbt_project_dir=project)
    parsed = manifest.stat().st_mtime_ns
    for path in (project, project / "models", project / "models" / "features", model, project / "target"):
        os.utime(path, ns=(parsed - 10**9, parsed - 10**9))
    assert not _changed_since_parsed(settings, manifest)
    os.utime(project / "target", ns=(parsed + 10**9, parsed + 10**9))  # dbt's own output does not count
    assert not _changed_since_parsed(settings, manifest)
    os.utime(model, ns=(parsed + 10**9, parsed + 10**9))  # e.g. a view's training config edited
    assert _changed_since_parsed(settings, manifest)
    os.utime(model, ns=(parsed - 10**9, parsed - 10**9))
    os.utime(project / "models", ns=(parsed + 10**9, parsed + 10**9))  # a file added or removed
    assert _changed_since_parsed(settings, manifest)


def test_the_cli_shows_domains_and_spines_and_names_what_a_command_needs(built_home, capsys):
    assert main(["--home", str(built_home.home), "features", "list"]) == 0
    listing = capsys.readouterr().out
    assert "spine_flight__scheduled" in listing and "spine_customer__active" in listing
    assert "examples.flights.loader" in listing and "examples.churn.loader" in listing

    assert main(["--home", str(built_home.home), "train"]) == 2
    assert "which feature view? the project has 3 (card_fraud, customer_churn, flight_delay): name one with --view" \
        in capsys.readouterr().err
    assert main(["--home", str(built_home.home), "train", "--view", "flight_dealy"]) == 2
    assert "no feature view 'flight_dealy' (known: card_fraud, customer_churn, flight_delay)" in capsys.readouterr().err
    assert main(["--home", str(built_home.home), "features", "run", "--domain", "flight"]) == 2
    assert "no domain 'flight' (known: churn, flights, fraud)" in capsys.readouterr().err


def test_predict_without_a_model_names_the_registered_ones(scratch_home, capsys):
    assert main(["--home", str(scratch_home.home), "predict"]) == 2
    assert ("fti predict: error: --model: the registry has no model yet; train one with `fti train`"
            in capsys.readouterr().err)
