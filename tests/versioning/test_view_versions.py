"""Feature view versions in the catalog, and a model pinned to the view version it was trained on."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import CatalogError, catalog_from_manifest, load_catalog
from models_ml.definitions.pinning import pin_view


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    settings = load_settings(tmp_path_factory.mktemp("views") / "home")
    load_catalog(settings, refresh=True)
    return json.loads(settings.manifest_path.read_text())


def trained_on(view_version: int, carrier: int, features: list[str]) -> SimpleNamespace:
    groups = {"fg_airport__weather": 1, "fg_carrier__delay_stats": carrier, "fg_route__delay_stats": 1,
              "fg_plane__delay_stats": 1, "fg_plane__attributes": 1}
    return SimpleNamespace(model_name="flight_delay", version=7, feature_view="flight_delay",
                           feature_view_version=view_version, feature_group_versions=groups, features=features)


def test_flight_delay_has_three_versions_and_v1_stays_current(manifest):
    catalog = catalog_from_manifest(manifest)
    assert catalog.versions_of_view("flight_delay") == [1, 2, 3]
    assert catalog.view("flight_delay").version == 1 and "flight_delay_v2" not in catalog.views
    v1, v2 = catalog.view("flight_delay", 1), catalog.view("flight_delay", 2)
    assert v1.group_versions()["fg_carrier__delay_stats"] == 1 and v2.group_versions()["fg_carrier__delay_stats"] == 2
    # v2 differs only in the carrier's selection, which adds the 1-day window; the rest is v1's (YAML anchors).
    assert set(v2.feature_columns) - set(v1.feature_columns) == {
        "carrier_flight_count_1d", "carrier_departure_delay_mean_1d", "carrier_delayed_share_1d"}
    assert set(v1.feature_columns) <= set(v2.feature_columns)
    assert (v2.label, v2.inference_spine, v2.training) == (v1.label, v1.inference_spine, v1.training)
    assert catalog.group("fg_carrier__delay_stats").version == 1  # latest_version stays 1
    assert catalog.group("fg_carrier__delay_stats", 2).relation == "fg_carrier__delay_stats_v2"
    with pytest.raises(CatalogError, match=r"feature view 'flight_delay' has no version 4 \(versions: \[1, 2, 3\]\)"):
        catalog.view("flight_delay", 4)


def test_a_model_is_pinned_to_the_view_version_it_was_trained_on(manifest):
    catalog = catalog_from_manifest(manifest)
    on_v2 = pin_view(catalog, trained_on(2, 2, ["carrier_flight_count_1d", "carrier_flight_count_7d"]))
    assert on_v2.version == 2 and on_v2.group_versions()["fg_carrier__delay_stats"] == 2
    on_v1 = pin_view(catalog, trained_on(1, 1, ["carrier_flight_count_7d"]))
    assert on_v1.version == 1 and "carrier_flight_count_1d" not in on_v1.feature_columns


def test_a_versioned_exposure_must_say_the_version_its_name_says(manifest):
    changed = copy.deepcopy(manifest)
    changed["exposures"]["exposure.fti.flight_delay_v2"]["config"]["meta"]["fti"]["version"] = 3
    with pytest.raises(CatalogError, match="feature view flight_delay_v2: the name says version 2 but "
                                           "meta.fti.version is 3"):
        catalog_from_manifest(changed)


def test_a_view_version_declared_twice_is_refused(manifest):
    changed = copy.deepcopy(manifest)
    changed["exposures"]["exposure.fti.flight_delay"]["config"]["meta"]["fti"]["version"] = 2
    with pytest.raises(CatalogError, match="version 2 of view 'flight_delay' is declared twice"):
        catalog_from_manifest(changed)
