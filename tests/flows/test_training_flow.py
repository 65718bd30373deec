"""The training flow end to end on a small generated warehouse: register always, promote only past the gate."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import (
    Catalog,
    Feature,
    FeatureGroup,
    FeatureRef,
    FeatureView,
    LabelSpec,
)
from models_ml.training import registry

pytestmark = pytest.mark.slow


def _group(name, entity, columns, ttl=None) -> FeatureGroup:
    return FeatureGroup(
        name=name, version=1, latest_version=1, schema="features", relation=f"{name}_v1", entity=entity,
        event_time="event_at", created_time="loaded_at", ttl=ttl, online=False, description="",
        columns=tuple(Feature(c, "", "") for c in columns), unique_id=f"model.fti.{name}.v1",
    )


def toy_catalog() -> Catalog:
    carrier = _group("fg_carrier__stats", ("carrier_code",), ["carrier_code", "event_at", "delayed_share", "loaded_at"])
    weather = _group("fg_airport__weather", ("airport_code",),
                     ["airport_code", "event_at", "temperature_f", "condition", "loaded_at"], dt.timedelta(hours=3))
    label = LabelSpec(model="label_toy", schema="labels", relation="label_toy", entity=("flight_id",),
                      spine_time="prediction_at", target="is_delayed", event_time="scheduled_at",
                      request_features=("hour_local",), slices=("carrier_code", "origin_airport_code"))
    view = FeatureView(name="toy", version=1, description="", label=label, features=(
        FeatureRef(carrier, ("delayed_share",), {"carrier_code": "carrier_code"}, "carrier_"),
        FeatureRef(weather, ("temperature_f", "condition"), {"origin_airport_code": "airport_code"}, "origin_"),
    ))
    return Catalog(groups={(g.name, 1): g for g in (carrier, weather)}, views={"toy": view})


def make_warehouse(path) -> None:
    """3,000 flights over ~27 days; delays depend on the carrier's (hourly) delay share and the weather."""
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'; create schema labels; create schema features")
        con.execute("""
            create table features.fg_carrier__stats_v1 as
            select c as carrier_code, timestamptz '2023-12-31 00:00:00+00' + to_hours(h) as event_at,
                   share + (hash(h, c) % 100) / 1000.0 as delayed_share,
                   timestamptz '2024-03-01 00:00:00+00' as loaded_at
            from range(0, 24 * 40) t(h), (values ('AA', 0.2), ('BB', 0.4), ('CC', 0.6)) v(c, share)""")
        con.execute("""
            create table features.fg_airport__weather_v1 as
            select a as airport_code, timestamptz '2023-12-31 00:00:00+00' + to_hours(h) as event_at,
                   (hash(h, a) % 60)::double as temperature_f,
                   case when hash(a, h) % 4 = 0 then 'snow' else 'clear' end as condition,
                   timestamptz '2024-03-01 00:00:00+00' as loaded_at
            from range(0, 24 * 40) t(h), (values ('X'), ('Y')) v(a)""")
        con.execute("""
            create table labels.label_toy as
            with spine as (
                select i, ['AA', 'BB', 'CC'][1 + i % 3] as carrier_code, ['X', 'Y'][1 + (i // 3) % 2] as origin,
                       timestamptz '2024-01-01 00:00:00+00' + to_minutes(13 * i) as prediction_at
                from range(3000) t(i)
            ),
            scored as (
                select spine.*, c.delayed_share, w.condition
                from spine
                asof left join features.fg_carrier__stats_v1 c
                  on c.carrier_code = spine.carrier_code and spine.prediction_at >= c.event_at
                asof left join features.fg_airport__weather_v1 w
                  on w.airport_code = spine.origin and spine.prediction_at >= w.event_at
            )
            select 'f' || i as flight_id, carrier_code, origin as origin_airport_code,
                   prediction_at + interval 2 hours as scheduled_at, prediction_at,
                   extract(hour from prediction_at)::integer as hour_local,
                   (hash(i) % 1000) / 1000.0 < delayed_share + if(condition = 'snow', 0.3, 0.0) as is_delayed
            from scored""")


def test_training_flow_registers_promotes_and_keeps_challengers(tmp_path, monkeypatch, prefect_harness):
    import flows.training_pipeline as pipeline

    home = tmp_path / "home"
    home.mkdir()
    make_warehouse(home / "warehouse.duckdb")
    monkeypatch.setattr(pipeline, "load_catalog", lambda settings: toy_catalog())
    arguments = dict(view="toy", start="2024-01-01", end="2024-01-28", validation_start="2024-01-18",
                     test_start="2024-01-23", overrides={"num_boost_round": 60, "num_leaves": 7},
                     home=str(home))
    lenient = {"min_roc_auc": 0.6, "max_ece": 0.2, "min_worst_slice_roc_auc": 0.5}

    first = pipeline.training(**arguments, gate_overrides=lenient)
    assert (first["version"], first["alias"], first["gate_passed"]) == (1, "champion", True)
    assert first["metrics"]["roc_auc"] > 0.6 and first["champion_version"] is None
    assert first["worst_slice"]["column"] in ("carrier_code", "origin_airport_code")

    second = pipeline.training(**arguments, gate_overrides={**lenient, "min_roc_auc": 0.99})
    assert (second["version"], second["alias"], second["gate_passed"]) == (2, "challenger", False)
    assert second["snapshot_id"] == first["snapshot_id"] and second["snapshot_reused"]
    assert second["champion_version"] == 1
    assert second["metrics"] == first["metrics"]  # same snapshot, same config: the same model
    assert second["champion_metrics"]["roc_auc"] == pytest.approx(first["metrics"]["roc_auc"])

    settings = load_settings(home)
    assert registry.get_aliases(settings, "toy") == {"champion": 1, "challenger": 2}
    version = registry.get_version(settings, "toy", 2)
    assert version.snapshot_id == first["snapshot_id"] and not version.gate_passed
    assert (version.model_dir / "toy_v2_roc.png").exists()
    assert "champion_on_test" in registry.get_metrics(settings, "toy", 2)
