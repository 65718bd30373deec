"""The point-in-time join against hand-written expectations, on every backend and plan it runs on.

Each case builds its tiny tables in the test, so the case is visible where it is checked. Times are
offsets from T0 (UTC); results are compared sorted by the spine's `row_id`, since a join promises no order.
"""

from __future__ import annotations

import datetime
import itertools
import random
import warnings

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pytest

from models_ml.offline.pit import (
    FeatureSource,
    TimeBounds,
    point_in_time_join,
    spine_time_bounds,
)
from models_ml.offline import pit_by_source as pbs
from models_ml.offline.pit_by_source import SpineRowsMultiplied, point_in_time_join_by_source

# Polars cannot check that `join_asof` inputs are sorted by time within key groups; the join sorts them.
pytestmark = pytest.mark.filterwarnings("ignore:Sortedness of columns cannot be checked:UserWarning")

UTC = datetime.UTC
T0 = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
US = datetime.timedelta(microseconds=1)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def at(**offset: float) -> datetime.datetime:
    """T0 shifted by a timedelta given as keywords: at(hours=-1), at(microseconds=1)."""
    return T0 + datetime.timedelta(**offset)


class Engine:
    """One Ibis backend plus the join plan under test; builds tables on it and runs the join (with
    ``bounds``, as snapshots and batch inference run it: the spine's time bounds measured first and the
    unreachable feature rows dropped by constants)."""

    def __init__(self, backend: str, method: str, bounds: bool = False) -> None:
        self.backend, self.method, self.bounds = backend, method, bounds
        self.con = getattr(ibis, backend).connect()
        self._names = itertools.count()

    def table(self, **columns: list | pa.Array) -> ir.Table:
        return self.con.create_table(f"t{next(self._names)}", pa.table(columns))

    def join(self, spine: ir.Table, sources: list[FeatureSource], spine_time: str = "t") -> list[tuple]:
        bounds = spine_time_bounds(spine, spine_time) if self.bounds else None
        expr = point_in_time_join(spine, spine_time, sources, method=self.method, spine_time_bounds=bounds)
        result = self.con.to_pyarrow(expr)
        rows = sorted(result.to_pylist(), key=lambda row: row["row_id"])
        return [tuple(row.values()) for row in rows]

    def columns(self, spine: ir.Table, sources: list[FeatureSource], spine_time: str = "t") -> list[str]:
        return list(point_in_time_join(spine, spine_time, sources, method=self.method).columns)


class BySourceEngine(Engine):
    """The same join executed one source at a time into Arrow (what batch inference runs on DuckDB):
    every case must give the lazy join's rows; with ``chunk_rows``, a source of more rows than that is
    joined in passes over disjoint sets of entities."""

    def __init__(self, backend: str, method: str, bounds: bool = False, chunk_rows: int | None = None) -> None:
        super().__init__(backend, method, bounds)
        self.chunk_rows = chunk_rows

    def join(self, spine: ir.Table, sources: list[FeatureSource], spine_time: str = "t") -> list[tuple]:
        bounds = spine_time_bounds(spine, spine_time) if self.bounds else None
        result, _ = point_in_time_join_by_source(spine, spine_time, sources, method=self.method,
                                                 spine_time_bounds=bounds, execute=self.con.to_pyarrow,
                                                 chunk_rows=self.chunk_rows)
        assert result.column_names == self.columns(spine, sources, spine_time)
        rows = sorted(result.to_pylist(), key=lambda row: row["row_id"])
        return [tuple(row.values()) for row in rows]


class SparkEngine(Engine):
    """PySpark through the offline store (tables as temporary views of the process's one session, times
    typed as the store types them); Ibis has no as-of join there, so "auto" is the portable plan."""

    def __init__(self, store, bounds: bool) -> None:
        self.backend, self.method, self.bounds = "pyspark", "auto", bounds
        self.store, self.con = store, store.ibis

    def table(self, **columns: list | pa.Array) -> ir.Table:
        return self.store.arrow_table(pa.table(columns))


@pytest.fixture(
    params=[("duckdb", "auto", False), ("duckdb", "auto", True), ("duckdb", "portable", False),
            ("duckdb-by-source", "auto", False), ("duckdb-by-source", "auto", True),
            ("duckdb-by-source-passes", "auto", True),
            ("polars", "auto", False), ("datafusion", "auto", False),
            pytest.param(("pyspark", "auto", True), marks=pytest.mark.slow)],
    ids=["duckdb-asof", "duckdb-asof-bounds", "duckdb-portable", "duckdb-asof-by-source",
         "duckdb-asof-by-source-bounds", "duckdb-asof-by-source-in-passes", "polars-asof", "datafusion-portable", "pyspark-portable-bounds"],
)
def engine(request: pytest.FixtureRequest) -> Engine:
    """DuckDB (as-of plan, also with measured spine bounds; portable plan), Polars (as-of), DataFusion
    (no as-of join: portable, if installed), PySpark (portable, with measured bounds as snapshots and batch
    inference run it; the Spark session is the offline tests' shared one)."""
    backend, method, bounds = request.param
    if backend == "pyspark":
        return SparkEngine(request.getfixturevalue("spark_store"), bounds)
    if backend == "duckdb-by-source":
        return BySourceEngine("duckdb", method, bounds)
    if backend == "duckdb-by-source-passes":
        return BySourceEngine("duckdb", method, bounds, chunk_rows=2)
    if backend == "datafusion":
        pytest.importorskip("datafusion")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Engine(backend, method, bounds)


def source(table: ir.Table, **kwargs) -> FeatureSource:
    """A source with the names most cases use: key `k`, event time `ev`, one feature `x`."""
    kwargs.setdefault("keys", ["k"])
    kwargs.setdefault("event_time", "ev")
    kwargs.setdefault("features", ["x"])
    return FeatureSource(table=table, **kwargs)


# --- which row matches --------------------------------------------------------------------------


def test_event_time_equal_to_spine_time_matches_one_microsecond_later_does_not(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 1], t=[T0, at(microseconds=-1)])
    features = engine.table(
        k=[1, 1, 1],
        ev=[at(hours=-1), T0, at(microseconds=1)],
        x=["an hour before", "exactly at t", "one microsecond after"],
    )
    assert engine.join(spine, [source(features)]) == [
        (1, 1, T0, "exactly at t"),
        (2, 1, at(microseconds=-1), "an hour before"),
    ]


def test_ttl_bound_is_inclusive_and_one_microsecond_older_is_expired(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2, 3], k=[1, 2, 3], t=[T0, T0, T0])
    features = engine.table(
        k=[1, 2, 3, 3],
        ev=[T0 - HOUR, T0 - HOUR - US, T0 - HOUR - US, T0 - 2 * HOUR],
        x=["exactly ttl old", "ttl + 1us old", "ttl + 1us old", "older still"],
    )
    assert engine.join(spine, [source(features, ttl=HOUR)]) == [
        (1, 1, T0, "exactly ttl old"),
        (2, 2, T0, None),
        (3, 3, T0, None),  # an expired latest row does not fall back to an older one
    ]


def test_no_ttl_means_no_lower_bound(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(k=[1], ev=[T0 - 3650 * DAY], x=["ten years old"])
    assert engine.join(spine, [source(features)]) == [(1, 1, T0, "ten years old")]


def test_ttl_is_exact_across_a_daylight_saving_change(engine: Engine) -> None:
    # Europe's clocks went forward on 2024-03-31: a "1 day" calendar interval there is 23 hours, and DuckDB
    # does calendar arithmetic on timestamptz in the session's time zone.
    if engine.backend == "duckdb":
        engine.con.raw_sql("SET TimeZone = 'Europe/Berlin'")
    t = datetime.datetime(2024, 3, 31, 12, 0, tzinfo=UTC)
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[t, t])
    features = engine.table(k=[1, 2], ev=[t - DAY, t - DAY - US], x=["24h old", "24h + 1us old"])
    assert engine.join(spine, [source(features, ttl=DAY)]) == [(1, 1, t, "24h old"), (2, 2, t, None)]


def test_tie_on_event_time_goes_to_the_latest_created_time(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    ev = T0 - HOUR
    features = engine.table(
        k=[1, 1, 1, 2, 2],
        ev=[ev, ev, ev, ev, ev],
        created=[ev, ev + 2 * HOUR, ev + HOUR, ev + 2 * HOUR, ev],  # newest in the middle / first
        x=["first load", "last load", "second load", "last load", "first load"],
    )
    assert engine.join(spine, [source(features, created_time="created")]) == [
        (1, 1, T0, "last load"),
        (2, 2, T0, "last load"),
    ]


def test_a_null_created_time_loses_the_tie(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(
        k=[1, 1], ev=[T0, T0], created=pa.array([None, T0 - DAY], pa.timestamp("us", "UTC")), x=["null", "dated"]
    )
    assert engine.join(spine, [source(features, created_time="created")]) == [(1, 1, T0, "dated")]


def test_late_arriving_row_does_not_beat_a_newer_event_time(engine: Engine) -> None:
    # Feast's rule: the event time decides; the created time only breaks ties on it.
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(
        k=[1, 1],
        ev=[T0 - HOUR, T0 - 2 * HOUR],
        created=[T0 - HOUR, T0],
        x=["newer event", "older event, loaded later"],
    )
    assert engine.join(spine, [source(features, created_time="created")]) == [(1, 1, T0, "newer event")]


def test_full_ties_are_broken_by_the_largest_feature_values(engine: Engine) -> None:
    # No created time: documented rule is the largest features, column by column, NULL smallest.
    spine = engine.table(row_id=[1, 2, 3], k=[1, 2, 3], t=[T0, T0, T0])
    features = engine.table(
        k=[1, 1, 2, 2, 2, 3, 3],
        ev=[T0] * 7,
        a=[1, 2, 5, 5, None, None, None],
        b=["z", "a", "a", "b", "z", "b", None],
    )
    assert engine.join(spine, [source(features, features=["a", "b"])]) == [
        (1, 1, T0, 2, "a"),  # a decides
        (2, 2, T0, 5, "b"),  # a ties at 5, b decides; the NULL a loses despite b = "z"
        (3, 3, T0, None, "b"),
    ]


# --- what the spine gets when nothing matches, and what it keeps --------------------------------


def test_missing_entity_and_rows_only_in_the_future_give_null_features(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    features = engine.table(k=[1, 3], ev=[at(seconds=1), T0], x=["future", "other entity"])
    assert engine.join(spine, [source(features)]) == [(1, 1, T0, None), (2, 2, T0, None)]


def test_empty_feature_table_gives_null_features(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(
        k=pa.array([], pa.int64()), ev=pa.array([], pa.timestamp("us", "UTC")), x=pa.array([], pa.string())
    )
    assert engine.join(spine, [source(features)]) == [(1, 1, T0, None)]


def test_null_keys_never_match_and_the_row_is_kept(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2, 3], k=[None, 1, None], t=[T0, T0, T0])
    features = engine.table(k=[None, 1], ev=[T0 - HOUR, T0 - HOUR], x=["null key", "one"])
    assert engine.join(spine, [source(features)]) == [
        (1, None, T0, None),
        (2, 1, T0, "one"),
        (3, None, T0, None),
    ]


def test_null_spine_time_gets_null_features_and_is_kept(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 1], t=pa.array([None, T0], pa.timestamp("us", "UTC")))
    features = engine.table(k=[1], ev=[T0 - HOUR], x=["one"])
    assert engine.join(spine, [source(features)]) == [(1, 1, None, None), (2, 1, T0, "one")]


def test_duplicate_spine_rows_are_kept_exactly_and_each_gets_features(engine: Engine) -> None:
    # Identical rows, row_id included: the count must stay 3, each with the same features.
    spine = engine.table(row_id=[1, 1, 1, 2], k=[1, 1, 1, 1], t=[T0, T0, T0, T0 - 2 * HOUR])
    features = engine.table(k=[1, 1, 1], ev=[T0 - HOUR, T0 - HOUR, T0 - 3 * HOUR], x=["a", "b", "old"])
    assert engine.join(spine, [source(features)]) == [
        (1, 1, T0, "b"),
        (1, 1, T0, "b"),
        (1, 1, T0, "b"),
        (2, 1, T0 - 2 * HOUR, "old"),
    ]


def test_spine_columns_keep_their_order_and_extra_columns_survive(engine: Engine) -> None:
    spine = engine.table(label=[True], t=[T0], row_id=[1], k=[1], note=["kept"])
    features = engine.table(k=[1], ev=[T0], x=[1.5], y=[2])
    sources = [source(features, features=["y", "x"])]
    assert engine.columns(spine, sources) == ["label", "t", "row_id", "k", "note", "y", "x"]
    assert engine.join(spine, sources) == [(True, T0, 1, 1, "kept", 2, 1.5)]


# --- keys ---------------------------------------------------------------------------------------


def test_composite_keys_must_all_match(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2, 3], origin=["JFK", "JFK", "LGA"], carrier=["AA", "UA", "AA"], t=[T0] * 3)
    features = engine.table(
        origin=["JFK", "JFK", "LGA"],
        carrier=["AA", "DL", "UA"],
        ev=[T0 - HOUR] * 3,
        x=["JFK/AA", "JFK/DL", "LGA/UA"],
    )
    assert engine.join(spine, [source(features, keys=["origin", "carrier"])]) == [
        (1, "JFK", "AA", T0, "JFK/AA"),
        (2, "JFK", "UA", T0, None),
        (3, "LGA", "AA", T0, None),
    ]


def test_key_mapping_joins_differently_named_and_typed_columns(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], plane_id=pa.array([7, 8], pa.int32()), t=[T0, T0])
    features = engine.table(tailnum=pa.array([7, 9], pa.int64()), ev=[T0, T0], x=["seven", "nine"])
    assert engine.join(spine, [source(features, keys={"plane_id": "tailnum"})]) == [
        (1, 7, T0, "seven"),
        (2, 8, T0, None),
    ]


def test_a_source_without_keys_is_joined_on_time_alone(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], t=[T0, T0 - DAY])
    features = engine.table(ev=[T0 - HOUR, T0 + HOUR], x=["global", "future"])
    assert engine.join(spine, [source(features, keys=[])]) == [(1, T0, "global"), (2, T0 - DAY, None)]


# --- several sources ----------------------------------------------------------------------------


def test_two_sources_with_different_ttls_and_prefixes(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    weather = engine.table(k=[1, 2], ev=[T0 - 2 * HOUR, T0 - HOUR / 2], x=[10.0, 20.0])
    history = engine.table(entity=[1, 2], at=[T0 - 2 * DAY, T0 - 2 * HOUR], x=[100, 200])
    sources = [
        source(weather, ttl=HOUR, prefix="weather_"),
        source(history, keys={"k": "entity"}, event_time="at", ttl=3 * DAY, prefix="history_"),
    ]
    assert engine.join(spine, sources) == [
        (1, 1, T0, None, 100),  # weather expired after 1h, history kept for 3 days
        (2, 2, T0, 20.0, 200),
    ]


def test_same_feature_table_twice_with_different_ttls(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(k=[1], ev=[T0 - 2 * HOUR], x=["two hours old"])
    sources = [source(features, ttl=HOUR, prefix="fresh_"), source(features, prefix="any_")]
    assert engine.join(spine, sources) == [(1, 1, T0, None, "two hours old")]


# --- time zones ---------------------------------------------------------------------------------


def test_feature_table_in_another_time_zone_compares_instants(engine: Engine) -> None:
    berlin = pa.timestamp("us", "Europe/Berlin")
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    # Same instants as T0 and T0 + 1us, stored with a Berlin zone.
    features = engine.table(k=[1, 1], ev=pa.array([T0, T0 + US], berlin), x=["at t", "after t"])
    assert engine.join(spine, [source(features)]) == [(1, 1, T0, "at t")]


@pytest.mark.parametrize("column", ["t", "ev", "created"])
def test_naive_timestamps_are_rejected(engine: Engine, column: str) -> None:
    naive = pa.timestamp("us")
    aware = pa.timestamp("us", "UTC")
    moment = [T0.replace(tzinfo=None)]
    spine = engine.table(row_id=[1], k=[1], t=pa.array(moment, naive if column == "t" else aware))
    features = engine.table(
        k=[1],
        ev=pa.array(moment, naive if column == "ev" else aware),
        created=pa.array(moment, naive if column == "created" else aware),
        x=["x"],
    )
    where = "spine" if column == "t" else "feature source #0"
    with pytest.raises(ValueError, match=rf"{where}.*'{column}' is a naive timestamp"):
        point_in_time_join(spine, "t", [source(features, created_time="created")], method=engine.method)


def test_a_time_column_that_is_not_a_timestamp_is_rejected(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0.date()])
    features = engine.table(k=[1], ev=[T0], x=["x"])
    with pytest.raises(ValueError, match=r"spine.*'t' must be a timezone-aware timestamp, got date"):
        point_in_time_join(spine, "t", [source(features)], method=engine.method)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spine_time", "kwargs", "message"),
    [
        ("when", {}, r"spine: time column 'when' not found"),
        ("t", {"keys": ["entity"]}, r"feature source #0.*join key 'entity' not found in the spine"),
        ("t", {"keys": {"k": "entity"}}, r"feature source #0.*join key 'entity' not found in the feature table"),
        ("t", {"event_time": "event_at"}, r"feature source #0.*time column 'event_at' not found"),
        ("t", {"created_time": "loaded_at"}, r"feature source #0.*time column 'loaded_at' not found"),
        ("t", {"features": ["x", "wind"]}, r"feature source #0.*feature column 'wind' not found"),
        ("t", {"features": ["k"]}, r"output column 'k' clashes with a column of the spine"),
    ],
)
def test_missing_columns_and_clashes_are_named(engine: Engine, spine_time: str, kwargs: dict, message: str) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(k=[1], ev=[T0], x=["x"])
    with pytest.raises(ValueError, match=message):
        point_in_time_join(spine, spine_time, [source(features, **kwargs)], method=engine.method)


def test_two_sources_may_not_produce_the_same_column(engine: Engine) -> None:
    spine = engine.table(row_id=[1], k=[1], t=[T0])
    features = engine.table(k=[1], ev=[T0], x=["x"])
    with pytest.raises(ValueError, match=r"feature source #1.*'x' clashes with a column of feature source #0"):
        point_in_time_join(spine, "t", [source(features), source(features)], method=engine.method)


@pytest.mark.parametrize("ttl", [datetime.timedelta(0), -HOUR])
def test_a_ttl_must_be_positive(ttl: datetime.timedelta) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        FeatureSource(table=ibis.memtable({"k": [1]}), keys=["k"], event_time="ev", features=["x"], ttl=ttl)


# --- the plan -----------------------------------------------------------------------------------


def test_duckdb_compiles_to_a_native_asof_join_and_nothing_runs() -> None:
    con = ibis.duckdb.connect()
    spine = con.create_table("spine", pa.table({"row_id": [1], "k": [1], "t": [T0]}))
    features = con.create_table("features", pa.table({"k": [1], "ev": [T0], "x": ["x"]}))
    expr = point_in_time_join(spine, "t", [source(features)])
    assert isinstance(expr, ir.Table)
    assert "ASOF LEFT JOIN" in ibis.to_sql(expr)
    assert "ASOF" not in ibis.to_sql(point_in_time_join(spine, "t", [source(features)], method="portable"))


# --- everything at once, against a readable reference -------------------------------------------


def reference(spine: list[dict], features: list[dict], ttl: datetime.timedelta | None) -> list[tuple]:
    """The semantics, written as plainly as possible: filter the candidates, take the maximum."""

    def rank(row: dict) -> tuple:
        return (
            row["ev"],
            row["created"] is not None,
            row["created"] or T0,
            row["a"] is not None,
            row["a"] or 0,
            row["b"] is not None,
            row["b"] or "",
        )

    out = []
    for s in spine:
        candidates = [
            f
            for f in features
            if s["k"] is not None
            and f["k"] == s["k"]
            and s["t"] is not None
            and f["ev"] <= s["t"]
            and (ttl is None or f["ev"] >= s["t"] - ttl)
        ]
        best = max(candidates, key=rank) if candidates else {"a": None, "b": None}
        out.append((s["row_id"], s["k"], s["t"], best["a"], best["b"]))
    return sorted(out, key=lambda row: row[0])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ttl", [None, 2 * HOUR], ids=["no-ttl", "ttl"])
def test_random_tables_full_of_ties_and_nulls_match_the_reference(
    engine: Engine, seed: int, ttl: datetime.timedelta | None
) -> None:
    rng = random.Random(seed)
    times = [T0 + i * HOUR + rng.choice([-US, 0 * US, US]) for i in range(6)]  # few times: many ties

    def maybe(value, p=0.15):
        return None if rng.random() < p else value

    spine = [
        {"row_id": i % 50, "k": maybe(rng.randint(0, 4)), "t": maybe(rng.choice(times), 0.05)} for i in range(60)
    ]
    features = [
        {
            "k": maybe(rng.randint(0, 5), 0.05),
            "ev": rng.choice(times),
            "created": maybe(rng.choice(times)),
            "a": maybe(rng.randint(0, 2), 0.3),
            "b": maybe(rng.choice("xyz"), 0.3),
        }
        for _ in range(80)
    ]
    spine_table = engine.table(
        row_id=[r["row_id"] for r in spine],
        k=pa.array([r["k"] for r in spine], pa.int64()),
        t=pa.array([r["t"] for r in spine], pa.timestamp("us", "UTC")),
    )
    feature_table = engine.table(
        k=pa.array([f["k"] for f in features], pa.int64()),
        ev=pa.array([f["ev"] for f in features], pa.timestamp("us", "UTC")),
        created=pa.array([f["created"] for f in features], pa.timestamp("us", "UTC")),
        a=pa.array([f["a"] for f in features], pa.int64()),
        b=pa.array([f["b"] for f in features], pa.string()),
    )
    got = engine.join(spine_table, [source(feature_table, features=["a", "b"], created_time="created", ttl=ttl)])
    assert sorted(got, key=nulls_first) == sorted(reference(spine, features, ttl), key=nulls_first)


def nulls_first(row: tuple) -> tuple:
    """A sort key for rows holding NULLs (duplicate row_ids are ordered by their other values)."""
    return tuple((value is not None, value) if value is not None else (False, 0) for value in row)


# --- odds and ends ------------------------------------------------------------------------------


def test_a_sub_second_ttl_is_exact(engine: Engine) -> None:
    if engine.backend == "datafusion":
        pytest.skip("Ibis has no sub-second intervals on DataFusion")
    ttl = datetime.timedelta(milliseconds=1500)
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    features = engine.table(k=[1, 2], ev=[T0 - ttl, T0 - ttl - US], x=["1.5 s old", "1.5 s + 1us old"])
    assert engine.join(spine, [source(features, ttl=ttl)]) == [(1, 1, T0, "1.5 s old"), (2, 2, T0, None)]


def test_the_matched_event_time_can_be_taken_as_a_feature(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    features = engine.table(k=[1, 1], ev=[T0 - 2 * HOUR, T0 - HOUR], x=["old", "new"])
    sources = [source(features, features=["ev", "x"], prefix="f_")]
    assert engine.join(spine, sources) == [(1, 1, T0, T0 - HOUR, "new"), (2, 2, T0, None, None)]


def test_the_matched_event_time_is_output_and_null_when_nothing_is_within_ttl(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2, 3, 4], k=[1, 2, 3, None], t=[T0, T0, T0, T0])
    features = engine.table(k=[1, 1, 2, 3], ev=[at(hours=-3), at(hours=-1), at(hours=-30), at(hours=-2)],
                            x=["old", "new", "expired", None])  # key 3: found, with a NULL value
    sources = [source(features, ttl=DAY, prefix="f_", matched_event_time="f_matched_at")]
    assert engine.columns(spine, sources) == ["row_id", "k", "t", "f_x", "f_matched_at"]
    assert engine.join(spine, sources) == [
        (1, 1, T0, "new", at(hours=-1)),
        (2, 2, T0, None, None),  # only an expired row
        (3, 3, T0, None, at(hours=-2)),  # found, its value is NULL: told apart by the matched time
        (4, None, T0, None, None),
    ]
    with pytest.raises(ValueError, match="output column 'k' clashes with a column of the spine"):
        engine.columns(spine, [source(features, matched_event_time="k")])


def test_bounds_hold_in_the_hour_a_daylight_saving_change_repeats(engine: Engine) -> None:
    """A spine in New York time at 01:30 EDT on 2024-11-03 (the first of two 01:30s): the measured bounds
    must name that instant, not the later 01:30 EST, or the TTL prune drops the row it needs."""
    new_york = pa.timestamp("us", "America/New_York")
    first_0130 = datetime.datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    spine = engine.table(row_id=[1], k=[1], t=pa.array([first_0130], new_york))
    features = engine.table(k=[1], ev=pa.array([first_0130 - datetime.timedelta(minutes=30)], new_york), x=[42.0])
    rows = engine.join(spine, [source(features, ttl=HOUR)])
    assert [row[-1] for row in rows] == [42.0]


def test_spine_time_bounds_ignore_nulls_and_are_none_without_times(engine: Engine) -> None:
    spine = engine.table(row_id=[1, 2, 3], k=[1, 2, 3], t=pa.array([at(hours=-5), None, T0], pa.timestamp("us", "UTC")))
    assert spine_time_bounds(spine, "t") == TimeBounds(at(hours=-5), T0, rows=3)
    nothing = engine.table(row_id=[1], k=[1], t=pa.array([None], pa.timestamp("us", "UTC")))
    assert spine_time_bounds(nothing, "t") == TimeBounds(None, None, rows=1)
    features = engine.table(k=[1], ev=[at(hours=-6)], x=["x"])
    assert engine.join(nothing, [source(features)]) == [(1, 1, None, None)]


def test_spine_time_bounds_widen_nanoseconds_to_whole_microseconds() -> None:
    """Polars keeps nanosecond times; the bounds must not be truncated inwards."""
    nanos = pa.array([1_709_294_400_000_000_900, 1_709_294_400_000_000_100], pa.timestamp("ns", "UTC"))
    engine = Engine("polars", "auto", bounds=True)
    spine = engine.table(row_id=[1, 2], k=[1, 1], t=nanos)
    bounds = spine_time_bounds(spine, "t")
    assert bounds.earliest == T0 and bounds.latest == T0 + US  # [0.1 us, 0.9 us] -> [0, 1 us]
    features = engine.table(k=[1], ev=pa.array([1_709_294_400_000_000_500], pa.timestamp("ns", "UTC")), x=[42.0])
    assert [row[-1] for row in engine.join(spine, [source(features)])] == [42.0, None]
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeBounds(datetime.datetime(2024, 1, 1), None)


def test_an_empty_spine_gives_an_empty_result(engine: Engine) -> None:
    empty = {"row_id": pa.int64(), "k": pa.int64(), "t": pa.timestamp("us", "UTC")}
    spine = engine.table(**{name: pa.array([], dtype) for name, dtype in empty.items()})
    features = engine.table(k=[1], ev=[T0], x=["x"])
    assert engine.join(spine, [source(features)]) == []


def test_the_as_of_plan_is_refused_where_no_verified_as_of_join_exists() -> None:
    pytest.importorskip("datafusion")
    con = ibis.datafusion.connect()
    spine = con.create_table("spine", pa.table({"row_id": [1], "k": [1], "t": [T0]}))
    features = con.create_table("features", pa.table({"k": [1], "ev": [T0], "x": ["x"]}))
    with pytest.raises(ValueError, match="method='asof' is not available on the datafusion backend"):
        point_in_time_join(spine, "t", [source(features)], method="asof")


def test_unique_event_times_skips_the_tie_break_and_gives_the_same_answer(engine: Engine) -> None:
    """A table with one row per (key, event time), as a dbt-tested feature group is, joins the same
    with the tie-break comparison skipped."""
    spine = engine.table(row_id=[1, 2, 3, 4], k=[1, 1, 2, 3], t=[T0, at(hours=-2), T0, T0])
    features = engine.table(
        k=[1, 1, 2, 2],
        ev=[at(hours=-3), at(hours=-1), at(hours=-30), at(hours=-1)],
        created=[at(hours=-3), at(hours=-1), at(hours=-1), at(hours=-1)],
        x=["old", "latest", "expired", "fresh"],
    )
    default = engine.join(spine, [source(features, created_time="created", ttl=DAY)])
    promised = engine.join(spine, [source(features, created_time="created", ttl=DAY, unique_event_times=True)])
    assert promised == default == [
        (1, 1, T0, "latest"),
        (2, 1, at(hours=-2), "old"),
        (3, 2, T0, "fresh"),
        (4, 3, T0, None),
    ]


def test_unique_keys_joins_without_as_of_and_gives_the_same_answer(engine: Engine) -> None:
    """A table with one row per key (static attributes, a dbt `unique` test on the entity) is joined by a
    plain left join on the keys, with the same answer: used only when its event time is in [t - ttl, t]."""
    spine = engine.table(
        row_id=[1, 2, 3, 4, 5, 6],
        k=[1, 1, 2, 3, None, 4],
        t=pa.array([T0, at(hours=-3), T0, T0, T0, None], pa.timestamp("us", "UTC")),
    )
    features = engine.table(k=[1, 2, 4], ev=[at(hours=-2), at(hours=-30), at(hours=-1)], x=["one", "stale", "four"])
    expected = [
        (1, 1, T0, "one", at(hours=-2)),
        (2, 1, at(hours=-3), None, None),  # the row is from after this spine time
        (3, 2, T0, None, None),  # older than the TTL
        (4, 3, T0, None, None),  # no row
        (5, None, T0, None, None),  # NULL key
        (6, 4, None, None, None),  # NULL spine time
    ]
    for unique_keys in (False, True):
        sources = [source(features, ttl=DAY, unique_keys=unique_keys, matched_event_time="matched")]
        assert engine.join(spine, sources) == expected
    if engine.backend == "duckdb":
        expr = point_in_time_join(spine, "t", [source(features, unique_keys=True)], method=engine.method)
        assert "ASOF" not in ibis.to_sql(expr).upper()


# --- one source at a time ------------------------------------------------------------------------


def by_source_engine(chunk_rows: int | None = None) -> BySourceEngine:
    return BySourceEngine("duckdb", "auto", chunk_rows=chunk_rows)


def test_by_source_keeps_the_spine_order_and_only_the_columns_asked_for() -> None:
    engine = by_source_engine()
    spine = engine.table(row_id=[3, 1, 2, 1], k=[2, 1, 1, 1], t=[T0, T0, at(hours=-2), T0])
    first = engine.table(k=[1, 1, 2], ev=[at(hours=-3), at(hours=-1), at(hours=-1)], x=["old", "new", "two"])
    second = engine.table(k=[1, 2], ev=[at(hours=-1), at(hours=-1)], y=[10, 20])
    sources = [source(first, prefix="a_"), source(second, features=["y"], matched_event_time="second_at")]
    joined, bounds = point_in_time_join_by_source(spine, "t", sources, keep={"a_x", "second_at"},
                                                  execute=engine.con.to_pyarrow)
    assert joined.column_names == ["row_id", "k", "t", "a_x", "second_at"]
    assert joined.to_pylist() == [
        {"row_id": 3, "k": 2, "t": T0, "a_x": "two", "second_at": at(hours=-1)},
        {"row_id": 1, "k": 1, "t": T0, "a_x": "new", "second_at": at(hours=-1)},
        {"row_id": 2, "k": 1, "t": at(hours=-2), "a_x": "old", "second_at": None},
        {"row_id": 1, "k": 1, "t": T0, "a_x": "new", "second_at": at(hours=-1)},
    ]
    assert (bounds.earliest, bounds.latest, bounds.rows) == (at(hours=-2), T0, 4)
    in_passes, _ = point_in_time_join_by_source(spine, "t", sources, keep={"a_x", "second_at"},
                                                execute=engine.con.to_pyarrow, chunk_rows=1)  # 3 and 2 passes
    assert in_passes.equals(joined)


def test_by_source_in_time_passes_gives_the_lazy_joins_rows() -> None:
    """With a TTL short next to the spine's span, a large source's passes cut the spine into time ranges
    (here 4 of 60 hours): spine rows exactly at a pass's edges, matches from before a pass's start (within
    the TTL, and exactly at its bound), ties on event time, NULL times and keys all keep the lazy join's
    answer."""
    rng = random.Random(15)
    engine = by_source_engine(chunk_rows=10)
    edges = [at(hours=60 * part) for part in range(5)]  # the spine spans T0 .. T0 + 240 h: passes of 60 h
    ttl = datetime.timedelta(hours=6)
    # key 4: an hour into pass 2, its only row 5 h before the pass began; key 5: at pass 3's first instant,
    # its only row exactly the TTL before it
    fixed_spine = [(4, edges[2] + HOUR), (5, edges[3]), *((1, edge) for edge in edges),
                   *((1, edge - US) for edge in edges[1:]), (1, None), (None, edges[1])]
    fixed_rows = [(4, edges[2] - 5 * HOUR), (5, edges[3] - ttl), *((1, edge - ttl) for edge in edges),
                  *((1, edge) for edge in edges)]
    spine_rows = fixed_spine + [(rng.choice([2, 3, None]), at(minutes=rng.randrange(0, 240 * 60)))
                                for _ in range(200)]
    rows = fixed_rows + [(rng.choice([2, 3]), at(minutes=rng.randrange(-600, 250 * 60))) for _ in range(23)]
    rows += rows[2:7]  # the same (key, event time) again: the later created time wins; 40 rows, 4 passes
    spine = engine.table(row_id=list(range(len(spine_rows))), k=[k for k, _ in spine_rows],
                         t=[t for _, t in spine_rows])
    features = engine.table(k=[k for k, _ in rows], ev=[ev for _, ev in rows],
                            created=[at(seconds=i) for i in range(len(rows))], x=[f"r{i}" for i in range(len(rows))])
    sources = [source(features, created_time="created", ttl=ttl, matched_event_time="matched_at")]
    parts = pbs._parts(spine, "t", sources[0], spine_time_bounds(spine, "t"), 10, engine.con.to_pyarrow)
    assert [bounds.earliest for _, _, bounds in parts] == edges[:4]  # four time passes, not hash passes
    joined, _ = point_in_time_join_by_source(spine, "t", sources, execute=engine.con.to_pyarrow, chunk_rows=10)
    got = joined.to_pylist()
    assert [row["x"] for row in got[:2]] == ["r0", "r1"]
    assert [row["x"] for row in got[2:7]] == ["r7", "r8", "r9", "r10", "r11"]  # at each edge: the row at it
    assert [row["x"] for row in got[7:11]] == ["r36", "r37", "r38", "r39"]  # just before: the TTL-old tie's copy
    lazy = sorted(engine.con.to_pyarrow(point_in_time_join(spine, "t", sources)).to_pylist(),
                  key=lambda row: row["row_id"])
    assert got == lazy


def test_by_source_takes_an_arrow_spine_and_leaves_no_table_behind() -> None:
    engine = by_source_engine()
    features = engine.table(k=[1], ev=[at(hours=-1)], x=["x"])
    before = set(engine.con.list_tables())
    spine = pa.table({"row_id": [1, 2], "k": [1, 9], "t": [T0, T0]})
    joined, _ = point_in_time_join_by_source(spine, "t", [source(features)], execute=engine.con.to_pyarrow)
    assert joined.column("x").to_pylist() == ["x", None]
    assert set(engine.con.list_tables()) == before


def test_by_source_names_the_source_whose_promised_unique_keys_multiply_rows() -> None:
    """A table promised one row per key (a failing dbt `unique` test leaves it built) would multiply spine
    rows in the lazy join; here the source is named and the count given."""
    engine = by_source_engine()
    spine = engine.table(row_id=[1, 2], k=[1, 2], t=[T0, T0])
    fine = engine.table(k=[1, 2], ev=[at(hours=-1), at(hours=-1)], y=[1, 2])
    duplicated = engine.table(k=[1, 1, 2], ev=[at(hours=-2), at(hours=-1), at(hours=-1)], x=["a", "b", "c"])
    sources = [source(fine, features=["y"]), source(duplicated, unique_keys=True)]
    with pytest.raises(SpineRowsMultiplied, match="feature source #1 gave 3 rows for 2 spine rows") as error:
        point_in_time_join_by_source(spine, "t", sources, execute=engine.con.to_pyarrow)
    assert (error.value.index, error.value.rows, error.value.spine_rows) == (1, 3, 2)


def test_by_source_refuses_a_spine_column_named_like_its_row_number() -> None:
    engine = by_source_engine()
    spine = engine.table(__fti_spine_row=[1], k=[1], t=[T0])
    features = engine.table(k=[1], ev=[T0], x=["x"])
    with pytest.raises(ValueError, match="'__fti_spine_row', which this join reserves"):
        point_in_time_join_by_source(spine, "t", [source(features)], execute=engine.con.to_pyarrow)
