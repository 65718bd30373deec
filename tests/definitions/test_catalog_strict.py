"""The catalog refuses, when it parses the manifest, any column `meta.fti` names that the model does not
declare and any time column not declared `timestamp with time zone`, in one line naming the model (or view),
the key and the fix; and it tells which published relations each domain's sources feed."""

import copy
import dataclasses
import os
import re
import shutil

import pytest

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import CatalogError, catalog_from_manifest, load_catalog

TZ = "timestamp with time zone"
COLUMN_FIX = "fix the name or declare the column in its YAML"
TZ_FIX = "declare it `timestamp with time zone` and cast in SQL (`::timestamptz`), storage is UTC"


def _model(name, columns, schema, meta=None, depends_on=()):
    """A model node as dbt's manifest has it: declared columns (name -> data_type), parents, `meta.fti`."""
    uid = f"model.shop.{name}"
    return uid, {
        "resource_type": "model", "unique_id": uid, "name": name, "schema": schema, "alias": name,
        "config": {"meta": {"fti": meta} if meta else {}},
        "columns": {c: {"name": c, "data_type": t} for c, t in columns.items()},
        "depends_on": {"nodes": list(depends_on)},
    }


def _source(source_name, table, domain):
    uid = f"source.shop.{source_name}.{table}"
    return uid, {"resource_type": "source", "unique_id": uid, "source_name": source_name, "name": table,
                 "source_meta": {"fti": {"domain": domain, "loader": f"loaders.{domain}"}}}


def small_manifest() -> dict:
    """Two domains: `shop` (raw.events -> stg_events -> a group, a label, an inference spine) and `ads`
    (raw_ads.clicks -> a group of its own); the `user_churn` view reads the shop's group, with an on-demand
    feature over a joined column and a request column."""
    spine_columns = {"user_id": "varchar", "prediction_at": TZ, "observed_at": "TIMESTAMPTZ", "plan": "varchar",
                     "visits": "integer"}
    nodes = dict([
        _model("stg_events", {"user_id": "varchar"}, "staging", depends_on=["source.shop.raw.events"]),
        _model("fg_user__activity", {"user_id": "varchar", "event_at": TZ, "loaded_at": "timestamptz",
                                     "clicks": "integer"}, "features",
               {"entity": ["user_id"], "event_time": "event_at", "created_time": "loaded_at"},
               depends_on=["model.shop.stg_events"]),
        _model("label_user__churn", {**spine_columns, "churned": "boolean", "country": "varchar"}, "labels",
               depends_on=["model.shop.stg_events"]),
        _model("spine_user__active", spine_columns, "spines", depends_on=["model.shop.stg_events"]),
        _model("fg_ad__clicks", {"ad_id": "varchar", "event_at": TZ}, "features",
               {"entity": "ad_id", "event_time": "event_at"}, depends_on=["source.shop.raw_ads.clicks"]),
    ])
    view = {"label": {"model": "label_user__churn", "entity": ["user_id"], "spine_time": "prediction_at",
                      "target": "churned", "event_time": "observed_at", "request_features": ["plan"],
                      "slices": ["country"]},
            "inference_spine": {"model": "spine_user__active"},
            "features": [{"group": "fg_user__activity", "join_keys": {"user_id": "user_id"}}],
            "on_demand": [{"name": "clicks_per_visit", "function": "examples.fraud.on_demand:ratio",
                           "inputs": {"numerator": "clicks", "denominator": "visits"}}]}
    exposure = {"name": "user_churn", "type": "ml", "config": {"meta": {"fti": view}}}
    sources = dict([_source("raw", "events", "shop"), _source("raw_ads", "clicks", "ads")])
    return {"nodes": nodes, "sources": sources, "exposures": {"exposure.shop.user_churn": exposure}}


def _changed(change) -> dict:
    """The small manifest with ``change(nodes, view_meta)`` applied."""
    manifest = copy.deepcopy(small_manifest())
    change(manifest["nodes"], manifest["exposures"]["exposure.shop.user_churn"]["config"]["meta"]["fti"])
    return manifest


def _refused(change) -> str:
    with pytest.raises(CatalogError) as raised:
        catalog_from_manifest(_changed(change))
    message = str(raised.value)
    assert "\n" not in message
    return message


def _columns(nodes, model):
    return nodes[f"model.shop.{model}"]["columns"]


def _group_meta(nodes):
    return nodes["model.shop.fg_user__activity"]["config"]["meta"]["fti"]


def test_the_small_project_parses_with_its_spine_on_demand_input_and_domains():
    catalog = catalog_from_manifest(small_manifest())
    view = catalog.view("user_churn")
    assert view.inference_spine.qualified_relation == "spines.spine_user__active"
    assert view.on_demand_request_inputs == ["visits"]
    assert catalog.domain_relations == {
        "shop": ("features.fg_user__activity", "labels.label_user__churn", "spines.spine_user__active"),
        "ads": ("features.fg_ad__clicks",),
    }


# --------------------------------------------------------------------------------------------------
# Feature groups


def test_a_group_key_the_model_does_not_declare_is_refused_with_model_key_columns_and_fix():
    message = _refused(lambda nodes, view: _group_meta(nodes).update(entity=["usr_id"]))
    assert message == ("feature group fg_user__activity: meta.fti.entity 'usr_id' is not a column of model "
                       "fg_user__activity (columns: user_id, event_at, loaded_at, clicks); " + COLUMN_FIX)


@pytest.mark.parametrize(("key", "column"), [("event_time", "evnt_at"), ("created_time", "ingested_at")])
def test_a_group_time_the_model_does_not_declare_is_refused(key, column):
    message = _refused(lambda nodes, view: _group_meta(nodes).update({key: column}))
    assert message.startswith(f"feature group fg_user__activity: meta.fti.{key} {column!r} is not a column of "
                              f"model fg_user__activity (columns: ")
    assert message.endswith(COLUMN_FIX)


def test_a_group_without_declared_columns_is_refused():
    message = _refused(lambda nodes, view: _columns(nodes, "fg_user__activity").clear())
    assert message == ("feature group fg_user__activity: model fg_user__activity declares no columns; a feature "
                       "group must declare every column (name and data_type) in its YAML")


@pytest.mark.parametrize(("key", "column", "data_type", "shown"), [
    ("event_time", "event_at", "timestamp", "declared 'timestamp'"),
    ("created_time", "loaded_at", None, "declared without a data_type"),
    ("created_time", "loaded_at", "timestamp without time zone", "declared 'timestamp without time zone'"),
])
def test_a_group_time_not_typed_timestamptz_is_refused(key, column, data_type, shown):
    message = _refused(lambda nodes, view: _columns(nodes, "fg_user__activity")[column].update(data_type=data_type))
    assert message == (f"feature group fg_user__activity: meta.fti.{key} {column!r} of model fg_user__activity is "
                       f"{shown}, not timestamp with time zone; {TZ_FIX}")


def test_timestamptz_is_recognised_in_any_case_and_spacing():
    def shout(nodes, view):
        _columns(nodes, "fg_user__activity")["event_at"]["data_type"] = "Timestamp  With Time Zone"
    assert catalog_from_manifest(_changed(shout)).group("fg_user__activity").event_time == "event_at"


# --------------------------------------------------------------------------------------------------
# Feature views: the label model


def test_a_target_the_label_model_lacks_is_refused_with_the_view_key_columns_and_fix():
    message = _refused(lambda nodes, view: view["label"].update(target="churnd"))
    assert message == ("feature view user_churn: meta.fti.label.target 'churnd' is not a column of label model "
                       "label_user__churn (columns: user_id, prediction_at, observed_at, plan, visits, churned, "
                       "country); " + COLUMN_FIX)


@pytest.mark.parametrize(("key", "change"), [
    ("meta.fti.label.entity", lambda view: view["label"].update(entity=["usr"])),
    ("meta.fti.label.spine_time", lambda view: view["label"].update(spine_time="usr")),
    ("meta.fti.label.event_time", lambda view: view["label"].update(event_time="usr")),
    ("meta.fti.label.request_features", lambda view: view["label"].update(request_features=["plan", "usr"])),
    ("meta.fti.label.slices", lambda view: view["label"].update(slices=["usr"])),
    ("meta.fti.features[0].join_keys", lambda view: view["features"][0].update(join_keys={"usr": "user_id"})),
    ("meta.fti.on_demand[0].inputs.denominator",
     lambda view: view["on_demand"][0]["inputs"].update(denominator="usr")),
])
def test_every_label_column_the_view_names_must_be_declared_by_the_label_model(key, change):
    message = _refused(lambda nodes, view: change(view))
    what = "neither a joined feature column nor" if "on_demand" in key else "not"
    assert message.startswith(f"feature view user_churn: {key} 'usr' is {what} a column of label model "
                              f"label_user__churn (columns: user_id, ")
    assert message.endswith(COLUMN_FIX)


def test_default_join_keys_say_they_come_from_the_group_entity():
    def rename(nodes, view):
        del view["features"][0]["join_keys"]
        _group_meta(nodes)["entity"] = ["clicks"]  # a column of the group, not of the label
    message = _refused(rename)
    assert message.startswith("feature view user_churn: meta.fti.features[0].join_keys (by default group "
                              "fg_user__activity's entity) 'clicks' is not a column of label model label_user__churn")


@pytest.mark.parametrize(("key", "column"), [("spine_time", "prediction_at"), ("event_time", "observed_at")])
def test_label_times_not_typed_timestamptz_are_refused(key, column):
    message = _refused(lambda nodes, view: _columns(nodes, "label_user__churn")[column].update(data_type="date"))
    assert message == (f"feature view user_churn: meta.fti.label.{key} {column!r} of label model label_user__churn "
                       f"is declared 'date', not timestamp with time zone; {TZ_FIX}")


# --------------------------------------------------------------------------------------------------
# Feature views: the inference spine


def _join_on_member_id(nodes, view):
    """The view joins the group on a spine column `member_id` that the label declares, the spine does not."""
    _columns(nodes, "label_user__churn")["member_id"] = {"name": "member_id", "data_type": "varchar"}
    view["features"][0]["join_keys"] = {"member_id": "user_id"}


def _dropped_from_spine(column):
    return lambda nodes, view: _columns(nodes, "spine_user__active").pop(column)


@pytest.mark.parametrize(("key", "column", "change"), [
    ("meta.fti.label.entity", "user_id", _dropped_from_spine("user_id")),
    ("meta.fti.label.spine_time", "prediction_at", _dropped_from_spine("prediction_at")),
    ("meta.fti.label.event_time", "observed_at", _dropped_from_spine("observed_at")),
    ("meta.fti.label.request_features", "plan", _dropped_from_spine("plan")),
    ("meta.fti.features[0].join_keys", "member_id", _join_on_member_id),
    ("meta.fti.on_demand[0].inputs.denominator", "visits", _dropped_from_spine("visits")),
])
def test_every_spine_column_the_view_joins_on_must_be_declared_by_the_inference_spine(key, column, change):
    message = _refused(change)
    what = "neither a joined feature column nor" if "on_demand" in key else "not"
    assert message.startswith(f"feature view user_churn: {key} {column!r} is {what} a column of inference spine "
                              f"model spine_user__active (columns: ")
    assert message.endswith(COLUMN_FIX)


def test_the_inference_spine_needs_neither_target_nor_slices():
    spine = small_manifest()["nodes"]["model.shop.spine_user__active"]["columns"]
    assert "churned" not in spine and "country" not in spine
    assert catalog_from_manifest(small_manifest()).view("user_churn").label.target == "churned"


def test_inference_spine_times_not_typed_timestamptz_are_refused():
    message = _refused(lambda nodes, view: _columns(nodes, "spine_user__active")["observed_at"].update(
        data_type="varchar"))
    assert message == ("feature view user_churn: meta.fti.label.event_time 'observed_at' of inference spine model "
                       f"spine_user__active is declared 'varchar', not timestamp with time zone; {TZ_FIX}")


def test_a_view_without_inference_spine_checks_the_label_model_only():
    def drop_spine(nodes, view):
        del view["inference_spine"]
        _columns(nodes, "spine_user__active").clear()
    catalog = catalog_from_manifest(_changed(drop_spine))
    assert catalog.view("user_churn").inference_spine is None
    assert catalog.domain_relations["shop"] == ("features.fg_user__activity", "labels.label_user__churn")


# --------------------------------------------------------------------------------------------------
# The real project


def _copy_project(settings, into):
    """A copy of the real dbt project (without dbt's own output) and settings that parse it."""
    shutil.copytree(settings.dbt_project_dir, into, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return dataclasses.replace(settings, dbt_project_dir=into)


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory):
    return load_catalog(load_settings(tmp_path_factory.mktemp("strict") / "home"), refresh=True)


def test_the_real_project_passes_every_rule_and_maps_domains_to_their_relations(real_catalog):
    flights, fraud = real_catalog.view("flight_delay"), real_catalog.view("card_fraud")
    spines = {v.name: {v.inference_spine.qualified_relation} if v.inference_spine else set()
              for v in (flights, fraud)}
    assert set(real_catalog.domain_relations["flights"]) == {
        "features.fg_airport__weather_v1", "features.fg_carrier__delay_stats_v1",
        "features.fg_carrier__delay_stats_v2", "features.fg_route__delay_stats_v1", "features.fg_plane__delay_stats_v1",
        "features.fg_plane__attributes_v1", "labels.label_flight__departure_delay", *spines["flight_delay"]}
    assert set(real_catalog.domain_relations["fraud"]) == {
        "features.fg_card__activity_v1", "features.fg_card__profile_v1", "features.fg_merchant__activity_v1",
        "labels.label_transaction__fraud", *spines["card_fraud"]}


def test_the_catalog_reparses_after_a_yaml_edit_and_refuses_the_misspelt_target(tmp_path):
    settings = _copy_project(load_settings(tmp_path / "home"), tmp_path / "project")
    assert load_catalog(settings).view("flight_delay").label.target == "is_delayed"
    exposures = settings.dbt_project_dir / "models" / "_exposures.yml"
    exposures.write_text(exposures.read_text().replace("target: is_delayed", "target: is_delayd"))
    parsed = settings.manifest_path.stat().st_mtime_ns
    os.utime(exposures, ns=(parsed + 10**9, parsed + 10**9))  # edited after the manifest, whatever the clock
    with pytest.raises(CatalogError) as raised:
        load_catalog(settings)
    # Every version of the view shares the label's YAML (an anchor), so any may be named first.
    assert re.match(r"feature view flight_delay(_v[23])?: meta\.fti\.label\.target 'is_delayd' is not a column of "
                    r"label model label_flight__departure_delay \(columns: flight_id, ", str(raised.value))
    assert str(raised.value).endswith(COLUMN_FIX)
