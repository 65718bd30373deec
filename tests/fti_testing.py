"""Helpers shared by the tests (importable as `fti_testing`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from examples.churn.generator import ChurnConfig
from examples.churn.loader import land_churn as land_churn_days
from examples.flights.loader import land_flights
from examples.fraud.generator import FraudConfig
from examples.fraud.loader import land_fraud as land_fraud_batches
from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.catalog import (
    Catalog,
    Feature,
    FeatureGroup,
    FeatureRef,
    FeatureView,
    LabelSpec,
)
from models_ml.offline.store import opened

SLICE_START = dt.date(2013, 1, 1)
SLICE_END = dt.date(2013, 1, 10)

# A tiny card-fraud dataset (about 20,000 transactions) whose 45 days end with the flights slice; with the
# 30-day label maturity, its first ~15 days have final labels by SLICE_END. More fraud than full size, so
# small tests see every pattern.
FRAUD_CONFIG = FraudConfig(
    seed=11, n_transactions=20_000, start=SLICE_END - dt.timedelta(days=44), days=45,
    compromised_card_share=0.10, compromised_merchant_share=0.02, dirty_row_share=0.001,
)


# A small subscription business (about 400 customers, 70 days from 2024-01-01 to 2024-03-10), with more
# churn and dirty rows than full size so small tests see every rule and enough cancellations. By its last
# day the labels of the month starts 2024-01-01 and 2024-02-01 are known; 2024-03-01 is in the inference
# spine only.
CHURN_TEST_CONFIG = ChurnConfig(seed=23, start=dt.date(2024, 1, 1), days=70, n_initial_customers=250,
                                n_new_customers=150, churn_rate_scale=2.0, dirty_row_share=0.004)
CHURN_CLOCK_START = dt.datetime(2026, 1, 3, tzinfo=dt.timezone.utc)


def ticking_clock(start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) -> Callable[[], dt.datetime]:
    """A landing clock that advances one second per batch: two homes landed in the same order get the
    same ingestion times, so their tables can be compared row for row."""
    counter = itertools.count()
    return lambda: start + dt.timedelta(seconds=next(counter))


def land(settings: Settings, through: dt.date, clock: Callable[[], dt.datetime], start: dt.date = SLICE_START):
    with opened(settings) as store:
        return land_flights(store, through, settings.home / "cache", start=start, clock=clock)


def land_fraud(settings: Settings, through: dt.date | dt.datetime, clock: Callable[[], dt.datetime],
               config: FraudConfig = FRAUD_CONFIG, batch: str = "day"):
    """Land the fraud dataset's batches through `through` (its own clock: flights' ingestion times stay put)."""
    with opened(settings) as store:
        return land_fraud_batches(store, through, settings.home / "cache", config=config, batch=batch, clock=clock)


def land_churn(settings: Settings, through: dt.date, clock: Callable[[], dt.datetime],
               config: ChurnConfig = CHURN_TEST_CONFIG):
    """Land the churn dataset's days through `through` (its own clock, as for fraud)."""
    with opened(settings) as store:
        return land_churn_days(store, through, settings.home / "cache", config=config, clock=clock)


def copy_home(source: Settings, target: Path) -> Settings:
    """A copy of a built home (warehouse and all), for tests that change data."""
    shutil.copytree(source.home, target)
    return load_settings(target)


def project_copy(tmp_path: Path, monkeypatch, relative: str, edit: Callable[[str], str]) -> Path:
    """A copy of the dbt project (and profiles) under `tmp_path`, with the file at `relative` (inside
    dbt_project/) rewritten by `edit`; FTI_PROJECT_ROOT points at it for the rest of the test."""
    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    shutil.copytree(root / "dbt_project", project / "dbt_project", ignore=shutil.ignore_patterns("target", "logs"))
    shutil.copy(root / "profiles.yml", project)
    edited = project / "dbt_project" / relative
    edited.write_text(edit(edited.read_text()))
    monkeypatch.setenv("FTI_PROJECT_ROOT", str(project))
    return project


def dbt_messages(run) -> str:
    """Everything a dbt run said went wrong: its exception and every node's message, in one string."""
    return " ".join([run.exception or "", *(o.message or "" for o in run.outcomes)])


def query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


CHECKED_IN_MODELS = ": checked in the model: "


def checked_in_models(settings: Settings) -> set[str]:
    """The tests the latest dbt invocation that checked any checked inside its models (the info line each
    model's check writes to dbt's log: dbt macros/row_checks.sql)."""
    log = (settings.dbt_log_dir / "dbt.log").read_text()
    if CHECKED_IN_MODELS not in log:
        return set()
    start = log.rindex("Running with dbt", 0, log.rindex(CHECKED_IN_MODELS))
    end = log.find("Running with dbt", start + 1)
    latest = log[start:] if end < 0 else log[start:end]
    return {name.strip() for line in latest.splitlines() if CHECKED_IN_MODELS in line
            for name in line.split(CHECKED_IN_MODELS, 1)[1].split(",")}


def copy_relations(con, path, relations: Sequence[str], prefix: str) -> list[str]:
    """Copy `relations` of the warehouse at `path` into tables of `con` named `<prefix>__<schema>__<name>`
    (returned in order). The warehouse is attached under its own catalog name, its file's stem
    (`warehouse`), as its views (staging, the quarantine) name it."""
    catalog = Path(path).stem
    con.execute(f"attach '{path}' as {catalog} (read_only)")
    try:
        tables = [f"{prefix}__{relation.replace('.', '__')}" for relation in relations]
        for relation, table in zip(relations, tables):
            con.execute(f"create table {table} as from {catalog}.{relation}")
    finally:
        con.execute(f"detach {catalog}")
    return tables


def table_differences(a_path, b_path, relation: str,
                      compared: Callable[[str], bool] = lambda column: True) -> tuple[int, int, int, int]:
    """Row counts of `relation` in two warehouses, and rows of each missing from the other (multisets), on
    the columns `compared` keeps (default: all)."""
    with duckdb.connect() as con:
        [a] = copy_relations(con, a_path, [relation], "a")
        [b] = copy_relations(con, b_path, [relation], "b")
        shown = ", ".join(f'"{c}"' for (c,) in con.execute(f"select column_name from (describe {a})").fetchall()
                          if compared(c))
        a_rows, b_rows = f"select {shown} from {a}", f"select {shown} from {b}"
        count_a = con.execute(f"select count(*) from {a}").fetchone()[0]
        count_b = con.execute(f"select count(*) from {b}").fetchone()[0]
        only_a = con.execute(f"select count(*) from ({a_rows} except all {b_rows})").fetchone()[0]
        only_b = con.execute(f"select count(*) from ({b_rows} except all {a_rows})").fetchone()[0]
    return count_a, count_b, only_a, only_b


def latest_artifact_markdown(key: str) -> str:
    """The markdown of the newest Prefect artifact with `key` (from the test harness's API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(artifacts, key=lambda a: a.created).data


def same_value(online: Any, offline: Any) -> bool:
    """Equal values; floats bit for bit; a missing value (None, NaN) only equals a missing value."""
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(online) or missing(offline):
        return missing(online) and missing(offline)
    if isinstance(online, float) or isinstance(offline, float):
        return float(online).hex() == float(offline).hex()
    return type(online) is type(offline) and online == offline


# --------------------------------------------------------------------------------------------------
# A toy flight-delay warehouse and its catalog, for tests that need a model without dbt


def toy_group(name: str, entity: tuple[str, ...], columns, ttl: dt.timedelta | None = None,
              version: int = 1) -> FeatureGroup:
    """A feature group in `features.<name>_v<version>`; `columns` are names or (name, type) pairs."""
    typed = [(c, "") if isinstance(c, str) else c for c in columns]
    return FeatureGroup(
        name=name, version=version, latest_version=version, schema="features", relation=f"{name}_v{version}",
        entity=entity, event_time="event_at", created_time="loaded_at", ttl=ttl, online=False, description="",
        columns=tuple(Feature(c, t, "") for c, t in typed), unique_id=f"model.fti.{name}.v{version}",
    )


TOY_CARRIER = toy_group("fg_carrier__stats", ("carrier_code",), ["carrier_code", "event_at", "delayed_share", "loaded_at"])
TOY_WEATHER = toy_group("fg_airport__weather", ("airport_code",),
                        ["airport_code", "event_at", "temperature_f", "condition", "loaded_at"], dt.timedelta(hours=3))
TOY_LABEL = LabelSpec(model="label_toy", schema="labels", relation="label_toy", entity=("flight_id",),
                      spine_time="prediction_at", target="is_delayed", event_time="scheduled_at",
                      request_features=("hour_local",), slices=("carrier_code", "origin_airport_code"))


def toy_catalog(weather: FeatureGroup = TOY_WEATHER, extra_groups=()) -> Catalog:
    """The `toy` view: the carrier's delay share and the origin's weather (`weather`: the group version)."""
    view = FeatureView(name="toy", version=1, description="", label=TOY_LABEL, features=(
        FeatureRef(TOY_CARRIER, ("delayed_share",), {"carrier_code": "carrier_code"}, "carrier_"),
        FeatureRef(weather, ("temperature_f", "condition"), {"origin_airport_code": "airport_code"}, "origin_"),
    ))
    groups = {(g.name, g.version): g for g in (TOY_CARRIER, TOY_WEATHER, weather, *extra_groups)}
    return Catalog(groups=groups, views={"toy": view})


def make_toy_warehouse(path, gaps: bool = False) -> None:
    """3,000 flights every 13 minutes from 2024-01-01; delays depend on the carrier's (hourly) delay share
    and the snow at the origin. Carriers AA/BB/CC and airports X/Y have hourly rows; with `gaps`, flights
    of carrier DD (no stats) and from Z (no weather) too, and Y has no weather on 2024-01-24."""
    carriers, origins = (["AA", "BB", "CC", "DD"], ["X", "Y", "Z"]) if gaps else (["AA", "BB", "CC"], ["X", "Y"])
    gap = """where not (a = 'Y' and event_at >= timestamptz '2024-01-24 00:00:00+00'
                                and event_at < timestamptz '2024-01-25 00:00:00+00')""" if gaps else ""
    with duckdb.connect(str(path)) as con:
        con.execute("set TimeZone = 'UTC'; create schema labels; create schema features")
        con.execute("""
            create table features.fg_carrier__stats_v1 as
            select c as carrier_code, timestamptz '2023-12-31 00:00:00+00' + to_hours(h) as event_at,
                   share + (hash(h, c) % 100) / 1000.0 as delayed_share,
                   timestamptz '2024-03-01 00:00:00+00' as loaded_at
            from range(0, 24 * 40) t(h), (values ('AA', 0.2), ('BB', 0.4), ('CC', 0.6)) v(c, share)""")
        con.execute(f"""
            create table features.fg_airport__weather_v1 as
            select a as airport_code, timestamptz '2023-12-31 00:00:00+00' + to_hours(h) as event_at,
                   (hash(h, a) % 60)::double as temperature_f,
                   case when hash(a, h) % 4 = 0 then 'snow' else 'clear' end as condition,
                   timestamptz '2024-03-01 00:00:00+00' as loaded_at
            from range(0, 24 * 40) t(h), (values ('X'), ('Y')) v(a)
            {gap}""")
        con.execute(f"""
            create table labels.label_toy as
            with spine as (
                select i, {carriers}[1 + i % {len(carriers)}] as carrier_code,
                       {origins}[1 + (i // {len(carriers)}) % {len(origins)}] as origin,
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
                   (hash(i) % 1000) / 1000.0 < coalesce(delayed_share, 0.5) + if(condition = 'snow', 0.3, 0.0)
                       as is_delayed
            from scored""")


def fit_for_registry(settings: Settings, view: FeatureView, time_range, split, config) -> tuple:
    """Snapshot ``view`` over ``time_range``, train with ``config`` and evaluate with a gate that passes
    anything: (model, evaluation, gate, lineage), ready for ``registry.register_model``. Tests that need a
    registered model, not a good one, share this (no Prefect, no plots)."""
    from models_ml.training import evaluate as ev
    from models_ml.training import registry
    from models_ml.training import snapshot as sn
    from models_ml.training import train as tr
    from models_ml.training.splits import load_splits

    with opened(settings) as store:
        info = sn.build_snapshot(store, view, time_range)
        splits = load_splits(store, info, split)
    model = tr.train_model(splits.train, splits.validation, features=info.feature_columns, target=info.target,
                           config=config, feature_view=view.name, feature_view_version=view.version)
    evaluation = ev.evaluate_model(model, splits.test, [], ev.EvaluationConfig(min_slice_rows=10))
    gate = ev.check_gate(evaluation, ev.GateConfig(min_roc_auc=0.0, max_ece=1.0, min_worst_slice_roc_auc=0.0))
    lineage = registry.Lineage(
        feature_view=view.name, feature_view_version=view.version,
        feature_group_versions=info.feature_group_versions, snapshot_id=info.snapshot_id,
        snapshot_hash=info.content_hash, code_version="test",
    )
    return model, evaluation, gate, lineage
