"""Benchmark batch inference end to end: 1,000,000 spine rows -> features as of time -> LightGBM -> predictions.

Self-contained: a seeded synthetic warehouse shaped like the flight-delay view is generated in a temporary
FTI_HOME (a label model of flights over 29 days and five feature groups shaped like flight_delay's, with
its TTLs and the uniqueness its dbt tests prove: hourly airport weather (TTL 3 hours), hourly carrier
(2 days) and daily route (7 days) delay stats, plane delay stats every 6 hours (2 days), all unique per
(entity, event time); plane attributes with string categories (no TTL, unique per plane); 41 model
inputs; some tails NULL or unknown, so some rows are flagged). A small LightGBM model is trained through
the project's own path (snapshot -> splits -> train_model -> registry, promoted to champion) on the first
days, then the champion scores the next 25 days (``--rows`` spine rows, 1,000,000 by default) with
``models_ml.inference.batch.pipeline.predict_window``: the same steps as the `batch-inference` flow.

Printed: rows/s end to end and the share of each stage; the spine stage is timed apart (the same spine
query alone, to Arrow), because in the run it is part of the one point-in-time query. A one-day warm-up
run compiles the model's trees (cached per home, as a deployment compiles a model version once). Then
``--first-runs`` first runs, each into an empty predictions table, of the previous path (the features
as one lazy point-in-time query, ``DuckDBStore.joins_by_source`` off; ``--no-before`` skips it) and of this
one (one source at a time), in turn, with the load average before each; medians per stage. Then ``--repeat`` re-runs replace the same rows (the idempotent
re-run), each followed by the in-run baseline: the hand-written floor of the two costly stages, a plain
DuckDB ASOF query to Arrow (no tie-break, no missing-group flags) and LightGBM's trees alone on a ready
float matrix (``booster.predict`` on numpy). Medians per stage are reported, with the project / baseline
ratio.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/batch_inference.py [--rows N] [--threads T] [--trees K]

Target: >= 300,000 rows/s end to end on a first run (median of three), 2 cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before LightGBM loads OpenMP: idle threads sleep

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402

from bench._machine import describe_machine  # noqa: E402
from models_ml.core.settings import Settings, load_settings  # noqa: E402
from models_ml.core.time import TimeRange, day_window  # noqa: E402
from models_ml.definitions.catalog import (  # noqa: E402
    Catalog,
    Feature,
    FeatureGroup,
    FeatureRef,
    FeatureView,
    LabelSpec,
)
from models_ml.inference.batch import pipeline as bp  # noqa: E402
from models_ml.inference.batch import predict as pr  # noqa: E402
from models_ml.offline import retrieval  # noqa: E402
from models_ml.offline.duckdb_store import DuckDBStore  # noqa: E402
from models_ml.offline.store import opened  # noqa: E402
from models_ml.training import evaluate as ev  # noqa: E402
from models_ml.training import registry  # noqa: E402
from models_ml.training import snapshot as sn  # noqa: E402
from models_ml.training import train as tr  # noqa: E402
from models_ml.training.splits import TimeSplit, load_splits  # noqa: E402

MODEL = "bench_delay"
TRAIN_START, SCORE_START = dt.date(2024, 1, 1), dt.date(2024, 1, 5)
SCORE_DAYS = 25
ORIGINS, DESTINATIONS, CARRIERS, PLANES = 30, 100, 16, 8000

WEATHER = ["temperature_f", "dew_point_f", "humidity_pct", "wind_direction_deg", "wind_speed_mph", "wind_gust_mph",
           "precipitation_in", "pressure_mb", "visibility_mi", "precipitation_3h_in", "visibility_min_3h_mi"]
STATS = ["flight_count_7d", "departure_delay_mean_7d", "delayed_share_7d", "flight_count_30d",
         "departure_delay_mean_30d", "delayed_share_30d"]
PLANE_STATS = ["flight_count_1d", "departure_delay_mean_1d", "delayed_share_1d", "flight_count_7d",
               "departure_delay_mean_7d", "delayed_share_7d"]
PLANE_ATTRIBUTES = ["year_built", "aircraft_type", "manufacturer", "engine_count", "seat_count", "engine_type"]


# --------------------------------------------------------------------------------------------------
# Synthetic warehouse and catalog


def _group(name: str, entity: tuple[str, ...], features: list[str], ttl: dt.timedelta | None = None,
           unique_entity: bool = False) -> FeatureGroup:
    columns = [*entity, "event_at", *features, "loaded_at"]
    return FeatureGroup(
        name=name, version=1, latest_version=1, schema="features", relation=f"{name}_v1", entity=entity,
        event_time="event_at", created_time="loaded_at", ttl=ttl, online=False, description="",
        columns=tuple(Feature(c, "", "") for c in columns), unique_id=f"model.bench.{name}.v1",
        unique_grain=True,  # as the real groups: a dbt unique test on (entity, event time); true by construction
        unique_entity=unique_entity,  # as fg_plane__attributes: a dbt unique test on the entity
    )


def bench_catalog() -> Catalog:
    weather = _group("fg_airport__weather", ("airport_code",), WEATHER, dt.timedelta(hours=3))
    carrier = _group("fg_carrier__delay_stats", ("carrier_code",), STATS, dt.timedelta(days=2))
    route = _group("fg_route__delay_stats", ("origin_airport_code", "destination_airport_code"), STATS,
                   dt.timedelta(days=7))
    plane = _group("fg_plane__delay_stats", ("tail_number",), PLANE_STATS, dt.timedelta(days=2))
    attributes = _group("fg_plane__attributes", ("tail_number",), PLANE_ATTRIBUTES, unique_entity=True)
    label = LabelSpec(
        model="label_bench", schema="labels", relation="label_bench", entity=("flight_id",),
        spine_time="prediction_at", target="is_delayed", event_time="scheduled_departure_at",
        request_features=("scheduled_hour_local", "scheduled_weekday_local", "distance_miles"),
        slices=("carrier_code", "origin_airport_code"),
    )
    view = FeatureView(name=MODEL, version=1, description="synthetic flight delay", label=label, features=(
        FeatureRef(weather, tuple(WEATHER), {"origin_airport_code": "airport_code"}, "origin_weather_"),
        FeatureRef(carrier, tuple(STATS), {"carrier_code": "carrier_code"}, "carrier_"),
        FeatureRef(route, tuple(STATS), {"origin_airport_code": "origin_airport_code",
                                         "destination_airport_code": "destination_airport_code"}, "route_"),
        FeatureRef(plane, tuple(PLANE_STATS), {"tail_number": "tail_number"}, "plane_"),
        FeatureRef(attributes, tuple(PLANE_ATTRIBUTES), {"tail_number": "tail_number"}, "plane_"),
    ))
    groups = {(g.name, g.version): g for g in (weather, carrier, route, plane, attributes)}
    return Catalog(groups=groups, views={MODEL: view})


def generate(settings: Settings, score_rows: int) -> dict[str, int]:
    """The seeded warehouse: values are functions of hash(entity, time, field), the same on every run.

    Flights are spread evenly over [TRAIN_START, SCORE_START + SCORE_DAYS): ``score_rows`` of them in the
    scoring window. The target depends on the weather at the origin, the carrier's and the plane's recent
    delays and the hour, through the same formulas the feature tables use, so the model learns something.
    """
    per_day = score_rows / SCORE_DAYS
    total = int(per_day * ((SCORE_START - TRAIN_START).days + SCORE_DAYS))
    start = f"timestamptz '{TRAIN_START.isoformat()} 00:00:00+00'"
    history = f"timestamptz '{(TRAIN_START - dt.timedelta(days=31)).isoformat()} 00:00:00+00'"
    days = (SCORE_START - TRAIN_START).days + SCORE_DAYS + 32
    loaded = "timestamptz '2024-06-01 00:00:00+00'"
    settings.ensure_home()
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("set TimeZone = 'UTC'; create schema if not exists labels; create schema if not exists features")

    def numbers(names: list[str], *key: str) -> str:
        return ",\n".join(f"(hash({', '.join(key)}, '{n}') % 10000) / 100.0 as {n}" for n in names)

    con.execute(f"""
        create table features.fg_airport__weather_v1 as
        select 'A' || a as airport_code, {history} + to_hours(h) as event_at,
               {numbers(WEATHER, 'a', 'h')}, {loaded} as loaded_at
        from range({ORIGINS}) t(a), range({days * 24}) u(h)
        where hash(a, h, 'gap') % 50 <> 0  -- a hole now and then: some rows fall outside the TTL""")
    con.execute(f"""
        create table features.fg_carrier__delay_stats_v1 as
        select 'C' || c as carrier_code, {history} + to_hours(h) as event_at,
               {numbers(STATS, 'c', 'h // 24')}, {loaded} as loaded_at
        from range({CARRIERS}) t(c), range({days * 24}) u(h)""")
    con.execute(f"""
        create table features.fg_route__delay_stats_v1 as
        select 'A' || o as origin_airport_code, 'D' || d as destination_airport_code,
               {history} + to_days(day) as event_at, {numbers(STATS, 'o', 'd', 'day')}, {loaded} as loaded_at
        from range({ORIGINS}) t(o), range({DESTINATIONS}) u(d), range({days}) v(day)""")
    con.execute(f"""
        create table features.fg_plane__delay_stats_v1 as
        select 'N' || p as tail_number, {history} + to_hours(6 * q) as event_at,
               {numbers(PLANE_STATS, 'p', 'q')}, {loaded} as loaded_at
        from range({PLANES}) t(p), range({days * 4}) u(q)""")
    con.execute(f"""
        create table features.fg_plane__attributes_v1 as
        select 'N' || p as tail_number, timestamptz '2000-01-01 00:00:00+00' as event_at,
               (1970 + hash(p, 'y') % 45)::integer as year_built,
               ['Fixed wing multi engine', 'Fixed wing single engine', 'Rotorcraft'][(1 + hash(p, 't') % 3)::bigint]
                   as aircraft_type,
               'MAKER' || (hash(p, 'm') % 12) as manufacturer, (1 + hash(p, 'e') % 3)::integer as engine_count,
               (20 + hash(p, 's') % 380)::integer as seat_count,
               ['Turbo-fan', 'Turbo-jet', 'Reciprocating', 'Turbo-prop'][(1 + hash(p, 'g') % 4)::bigint] as engine_type,
               {loaded} as loaded_at
        from range({PLANES - PLANES // 40}) t(p)  -- the newest planes have no attributes yet""")
    con.execute(f"""
        create table labels.label_bench as
        with flights as (
            select i,
                   {start} + to_microseconds((i * {86_400_000_000 / per_day:.6f})::bigint) as scheduled_departure_at,
                   hash(i, 'o') % {ORIGINS} as o, hash(i, 'd') % {DESTINATIONS} as d,
                   hash(i, 'c') % {CARRIERS} as c, hash(i, 't') % {PLANES} as p
            from range({total}) r(i)
        ),
        known as (
            select *, scheduled_departure_at - interval 2 hours as prediction_at,
                   epoch(scheduled_departure_at - interval 2 hours - {history})::bigint // 3600 as h
            from flights
        )
        select 'F' || i as flight_id, 'C' || c as carrier_code, 'A' || o as origin_airport_code,
               'D' || d as destination_airport_code,
               case when hash(i, 'null') % 100 = 0 then null else 'N' || p end as tail_number,
               scheduled_departure_at, prediction_at,
               hour(scheduled_departure_at - interval 5 hours)::integer as scheduled_hour_local,
               isodow(scheduled_departure_at - interval 5 hours)::integer as scheduled_weekday_local,
               (100 + hash(o, d) % 2400)::integer as distance_miles,
               (hash(i, 'y') % 1000) / 1000.0 <
                   0.05 + 0.25 * ((hash(o, h, 'precipitation_in') % 10000) / 10000.0)
                        + 0.25 * ((hash(c, h // 24, 'delayed_share_7d') % 10000) / 10000.0)
                        + 0.15 * ((hash(p, h // 6, 'delayed_share_1d') % 10000) / 10000.0)
                        + 0.01 * hour(scheduled_departure_at - interval 5 hours) as is_delayed
        from known""")
    counts = {
        table: con.execute(f"select count(*) from {table}").fetchone()[0]
        for table in ["labels.label_bench", "features.fg_airport__weather_v1", "features.fg_carrier__delay_stats_v1",
                      "features.fg_route__delay_stats_v1", "features.fg_plane__delay_stats_v1",
                      "features.fg_plane__attributes_v1"]
    }
    con.close()
    return counts


def train_champion(settings: Settings, catalog: Catalog, trees: int, threads: int) -> tuple[registry.ModelVersion, tr.Model]:
    """A small model through the project's path: snapshot -> time splits -> train_model -> register -> champion."""
    started = time.perf_counter()
    view = catalog.view(MODEL)
    with opened(settings) as store:
        info = sn.build_snapshot(store, view, TimeRange.of(TRAIN_START, SCORE_START))
        splits = load_splits(store, info, TimeSplit(fractions=(0.7, 0.15, 0.15)))
    config = tr.TrainConfig(num_boost_round=trees, early_stopping_rounds=trees, num_leaves=31, min_data_in_leaf=100,
                            learning_rate=0.1, num_threads=threads)
    model = tr.train_model(splits.train, splits.validation, features=info.feature_columns, target=info.target,
                           config=config, feature_view=view.name, feature_view_version=view.version)
    evaluation = ev.evaluate_model(model, splits.test, [], ev.EvaluationConfig())
    gate = ev.check_gate(evaluation, ev.GateConfig(min_roc_auc=0.0, max_ece=1.0, min_worst_slice_roc_auc=0.0))
    lineage = registry.Lineage(view.name, view.version, info.feature_group_versions, info.snapshot_id,
                               info.content_hash, code_version="bench")
    version = registry.register_model(settings, MODEL, model, evaluation, gate, lineage)
    registry.promote(settings, MODEL, version.version, publish=False)  # no online service to point
    print(f"model: trained on {splits.rows['train']:,} rows in {time.perf_counter() - started:.1f} s; "
          f"{model.best_iteration} trees x 31 leaves, test roc_auc {evaluation.metrics.roc_auc:.3f}", flush=True)
    return version, model


# --------------------------------------------------------------------------------------------------
# Measuring


STAGES = [  # (printed name, key in PredictionRun.seconds)
    ("resolve model + check lineage", ("resolve_model", "check_lineage")),
    ("spine + PIT join -> Arrow", ("features",)),
    ("prepare_features", ("prepare_features",)),
    ("predict (trees)", ("predict",)),
    ("assemble rows + flags", ("assemble",)),
    ("write (one transaction)", ("write",)),
]


def spine_alone(settings: Settings, catalog: Catalog, window: TimeRange) -> tuple[float, int]:
    """The spine query by itself, to Arrow: how much of the PIT stage is the spine."""
    with opened(settings) as store:
        view = catalog.view(MODEL)
        store.to_arrow(retrieval.inference_spine(store, view, window))  # warm
        started = time.perf_counter()
        rows = store.to_arrow(retrieval.inference_spine(store, view, window)).num_rows
        return time.perf_counter() - started, rows


def hand_written_sql(view: FeatureView, window: TimeRange) -> str:
    """The baseline of the features stage: one DuckDB query with a plain ASOF LEFT JOIN per group and the
    TTL as a CASE, as one would write it knowing (keys, event time) is unique here: no tie-break, no flags."""
    label = view.label
    columns, joins = [], []
    for i, ref in enumerate(view.features):
        group, alias = ref.group, f"g{i}"
        keys = " and ".join(f"s.{spine_key} = {alias}.{key}" for spine_key, key in ref.join_keys.items())
        joins.append(f"asof left join {group.qualified_relation} {alias} on {keys} "
                     f"and s.{label.spine_time} >= {alias}.{group.event_time}")
        for feature in ref.features:
            value = f"{alias}.{feature}"
            if group.ttl:
                value = (f"case when {alias}.{group.event_time} >= s.{label.spine_time} - interval "
                         f"{int(group.ttl.total_seconds())} second then {value} end")
            columns.append(f"{value} as {ref.prefix}{feature}")
    spine = ", ".join(f"s.{c}" for c in [*label.entity, label.spine_time, label.event_time, *label.request_features])
    return (f"select {spine}, {', '.join(columns)} from {label.qualified_relation} s {' '.join(joins)} "
            f"where s.{label.event_time} >= '{window.start.isoformat()}' "
            f"and s.{label.event_time} < '{window.end.isoformat()}'")


def baselines(
    settings: Settings, catalog: Catalog, model: tr.Model, window: TimeRange, threads: int
) -> dict[str, float]:
    """Hand-written floors: the features query in plain SQL, and the trees alone on a ready float matrix."""
    view = catalog.view(MODEL)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("set TimeZone = 'UTC'")
        started = time.perf_counter()
        con.sql(hand_written_sql(view, window)).to_arrow_table()
        sql_seconds = time.perf_counter() - started
    finally:
        con.close()
    with opened(settings) as store:
        features = pr.load_features(store, view, window, model.spec.features)
    matrix = tr.feature_matrix(features, model.spec)
    started = time.perf_counter()
    model.booster.predict(matrix, num_iteration=model.best_iteration or None, num_threads=threads)
    return {"features": sql_seconds, "predict": time.perf_counter() - started}


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def report(title: str, run: bp.PredictionRun, spine_seconds: float) -> float:
    total = sum(run.seconds.values())
    print(f"\n{title}: {run.rows:,} rows in {total:.2f} s = {run.rows / total:,.0f} rows/s end to end "
          f"({run.flagged_rows:,} flagged, {run.deleted:,} previous rows replaced, mean score {run.mean_score:.4f})")
    print(f"  {'stage':<34}{'seconds':>9}{'share':>8}")
    for name, keys in STAGES:
        seconds = sum(run.seconds.get(k, 0.0) for k in keys)
        print(f"  {name:<34}{seconds:>9.3f}{seconds / total:>8.1%}")
        if keys == ("features",):
            print(f"    {'of which the spine (timed alone)':<32}{spine_seconds:>9.3f}{spine_seconds / total:>8.1%}")
    return run.rows / total


def first_run(settings: Settings, catalog: Catalog, window: TimeRange, threads: int) -> bp.PredictionRun:
    """A run into an empty window: the predictions table is dropped first (the run creates it again)."""
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(f"drop table if exists {pr.table_name(MODEL)}")
    return bp.predict_window(settings, MODEL, window, catalog=catalog, num_threads=threads)


@contextlib.contextmanager
def joined_by_source(by_source: bool) -> Iterator[None]:
    """The store's features path for the runs inside: one source at a time, or the one lazy query."""
    saved = DuckDBStore.joins_by_source
    DuckDBStore.joins_by_source = by_source
    try:
        yield
    finally:
        DuckDBStore.joins_by_source = saved


def median_run(runs: list[bp.PredictionRun]) -> bp.PredictionRun:
    """The first run with each stage's median seconds over ``runs``."""
    return dataclasses.replace(runs[0], seconds={
        key: statistics.median(r.seconds.get(key, 0.0) for r in runs) for key in runs[0].seconds})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="spine rows to score (default 1,000,000)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="LightGBM prediction threads")
    parser.add_argument("--trees", type=int, default=100, help="boosting rounds of the model (31 leaves each)")
    parser.add_argument("--first-runs", type=int, default=3, help="first runs (into an empty window) per path")
    parser.add_argument("--repeat", type=int, default=3, help="re-runs (and baseline runs) to take medians of")
    parser.add_argument("--no-before", action="store_true",
                        help="skip the previous path (the features as one lazy query)")
    parser.add_argument("--home", help="FTI_HOME to build in (default: a temporary directory)")
    args = parser.parse_args()

    print(f"batch inference benchmark: {describe_machine()}")
    print(f"duckdb {duckdb.__version__}, lightgbm {tr.lgb.__version__}, threads {args.threads}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fti-bench-") as scratch:
        settings = load_settings(args.home or Path(scratch) / "home")
        catalog = bench_catalog()
        started = time.perf_counter()
        counts = generate(settings, args.rows)
        print(f"data: generated in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{t.split('.')[1]} {n:,}" for t, n in counts.items()), flush=True)
        _, model = train_champion(settings, catalog, args.trees, args.threads)

        window = day_window(SCORE_START, SCORE_DAYS)
        started = time.perf_counter()  # compiles the trees (once per model and home, cached)
        bp.predict_window(settings, MODEL, day_window(TRAIN_START), catalog=catalog, num_threads=args.threads)
        print(f"warm-up run (one day; compiles the trees): {time.perf_counter() - started:.2f} s", flush=True)
        spine_seconds, spine_rows = spine_alone(settings, catalog, window)

        # First runs, each into an empty window, the previous path and this one in turn (a change in the
        # machine's load hits both alike); medians are reported.
        paths = {"this": True} if args.no_before else {"before": False, "this": True}
        firsts: dict[str, list[bp.PredictionRun]] = {name: [] for name in paths}
        loads: dict[str, list[str]] = {name: [] for name in paths}
        for _ in range(args.first_runs):
            for name, by_source in paths.items():
                loads[name].append(_load())
                with joined_by_source(by_source):
                    firsts[name].append(first_run(settings, catalog, window, args.threads))
                assert firsts[name][-1].rows == spine_rows, (firsts[name][-1].rows, spine_rows)
        # The same rows, flags and scores; the mean score only to rounding, since the lazy query returns
        # the rows in another order and a float sum depends on its order (last-digit differences).
        every = [r for runs in firsts.values() for r in runs]
        assert len({(r.rows, r.flagged_rows) for r in every}) == 1
        assert all(math.isclose(r.mean_score, every[0].mean_score, rel_tol=1e-12) for r in every)
        rates = {}
        for name, runs in firsts.items():
            label = {"before": "previous path: the features as one lazy point-in-time query",
                     "this": "this path: the features joined one source at a time"}[name]
            rates[name] = report(f"first run (into an empty window), median of {len(runs)}, {label}",
                                 median_run(runs), spine_seconds)
            print(f"  rows/s per run: {', '.join(f'{r.rows / sum(r.seconds.values()):,.0f}' for r in runs)}; "
                  f"load average before each: {'; '.join(loads[name])}")
        first = firsts["this"][0]

        # Re-runs (each replaces the same 1M rows), interleaved with the hand-written baseline so a change
        # in the machine's load hits both alike; medians are reported.
        runs, floors = [], []
        for _ in range(args.repeat):
            runs.append(bp.predict_window(settings, MODEL, window, catalog=catalog, num_threads=args.threads))
            floors.append(baselines(settings, catalog, model, window, args.threads))
        median = median_run(runs)
        rerun = report(f"re-run (replaces the same rows), median of {args.repeat}", median, spine_seconds)
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            stored, distinct = con.execute(
                f"select count(*), count(distinct flight_id) from {pr.table_name(MODEL)} "
                f"where scheduled_departure_at >= ? and scheduled_departure_at < ?", [window.start, window.end],
            ).fetchone()
        assert stored == distinct == first.rows, (stored, distinct, first.rows)

        print("\nin-run baseline, hand-written (medians, interleaved with the re-runs):")
        for stage, label in [("features", "plain ASOF SQL -> Arrow (no ties, no flags)"),
                             ("predict", "LightGBM's trees alone on a ready numpy matrix")]:
            floor = statistics.median(f[stage] for f in floors)
            print(f"  {label:<46}{floor:>8.3f} s   project / baseline {median.seconds[stage] / floor:.2f}x")
        trees = model.best_iteration or model.booster.num_trees()
        print(f"  predict: {median.seconds['predict'] / first.rows / trees * 1e9:.1f} ns per row per tree "
              f"({trees} trees, {args.threads} threads)")

    print(f"load average at the end: {_load()} (other processes share the {os.cpu_count()} cores)")
    target = 300_000
    if "before" in rates:
        print(f"\nfirst run: {rates['this'] / rates['before']:.2f}x the previous path's rows/s")
    print(f"\nend to end: {rates['this']:,.0f} rows/s (first run, median), {rerun:,.0f} rows/s (re-run, median); "
          f"target {target:,} on a first run: {'met' if rates['this'] >= target else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
