"""The online store's contract: the same cases for every store registered by name (SQLite, Redis, ...).

A tiny warehouse is built in each test (two online groups: a card with many feature types and no TTL, and a
route pair with a one-hour TTL); the materializer reads it into the store under test. A new store joins by
one entry in :data:`EMPTY_STORES`, which opens an empty one.
"""

from __future__ import annotations

import datetime as dt
import threading

import duckdb
import pyarrow as pa
import pytest

from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.catalog import (
    Catalog,
    Feature,
    FeatureGroup,
    FeatureRef,
    FeatureView,
    LabelSpec,
)
from models_ml.inference.online.materialize import materialize, to_refresh
from models_ml.inference.online.store import (
    STORES,
    GroupRefresh,
    GroupSchema,
    RowsRequest,
    entity_key,
    open_online_store,
    to_us,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
LOAD = dt.datetime(2024, 2, 1, tzinfo=UTC)
CARD, PAIR = "fg_card__stats:v1", "fg_pair__stats:v1"


def _empty_sqlite(request, settings: Settings):
    return open_online_store(settings, "sqlite")


def _empty_redis(request, settings: Settings):
    store = open_online_store(settings.with_online_store(
        "redis", url=request.getfixturevalue("redis_server"), prefix="fti-test"))
    store.client.flushdb()
    return store


# store name -> (pytest request, settings of a fresh home) -> an empty store of that name
EMPTY_STORES = {"sqlite": _empty_sqlite, "redis": _empty_redis}


def test_every_registered_store_runs_the_contract():
    assert sorted(EMPTY_STORES) == sorted(STORES)


@pytest.fixture(params=sorted(STORES))
def store(request, tmp_path):
    """Each registered store, empty."""
    created = EMPTY_STORES[request.param](request, load_settings(tmp_path / "store-home"))
    yield created
    created.close()


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def _group(name, entity, columns, ttl=None) -> FeatureGroup:
    return FeatureGroup(
        name=name, version=1, latest_version=1, schema="features", relation=f"{name}_v1", entity=entity,
        event_time="event_at", created_time="loaded_at", ttl=ttl, online=True, description="",
        columns=tuple(Feature(c, "", "") for c in [*entity, "event_at", *columns, "loaded_at"]),
        unique_id=f"model.fti.{name}.v1",
    )


CARD_GROUP = _group("fg_card__stats", ("card_id",),
                    ["amount_sum", "tx_count", "is_blocked", "category", "last_seen_at", "opened_on"])
PAIR_GROUP = _group("fg_pair__stats", ("origin", "destination"), ["share"], ttl=dt.timedelta(hours=1))


def catalog() -> Catalog:
    label = LabelSpec(model="label_toy", schema="labels", relation="label_toy", entity=("tx_id",),
                      spine_time="requested_at", target="is_fraud", event_time="requested_at",
                      request_features=("amount",), slices=())
    view = FeatureView(name="toy", version=1, description="", label=label, features=(
        FeatureRef(CARD_GROUP, ("amount_sum", "category"), {"card": "card_id"}, "card_"),
        FeatureRef(PAIR_GROUP, ("share",), {"from_airport": "origin", "to_airport": "destination"}, "pair_"),
    ))
    return Catalog(groups={(g.name, 1): g for g in (CARD_GROUP, PAIR_GROUP)}, views={"toy": view})


@pytest.fixture
def home(tmp_path):
    settings = load_settings(tmp_path / "home")
    settings.ensure_home()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema features")
        con.execute("""create table features.fg_card__stats_v1 (
            card_id varchar, event_at timestamptz, amount_sum double, tx_count integer, is_blocked boolean,
            category varchar, last_seen_at timestamptz, opened_on date, loaded_at timestamptz)""")
        con.execute("""create table features.fg_pair__stats_v1 (
            origin varchar, destination varchar, event_at timestamptz, share double, loaded_at timestamptz)""")
    return settings


def add_card(settings, card, event_at, amount, loaded_at=LOAD, **more):
    row = {"tx_count": 1, "is_blocked": False, "category": "food", "last_seen_at": event_at,
           "opened_on": dt.date(2020, 5, 17), **more}
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("insert into features.fg_card__stats_v1 values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [card, event_at, amount, row["tx_count"], row["is_blocked"], row["category"],
                     row["last_seen_at"], row["opened_on"], loaded_at])


def add_pair(settings, origin, destination, event_at, share, loaded_at=LOAD):
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("insert into features.fg_pair__stats_v1 values (?, ?, ?, ?, ?)",
                    [origin, destination, event_at, share, loaded_at])


def run(settings, store, at=None):
    return materialize(settings, store, catalog=catalog(), materialized_at=at)


def stored(store, group, keys):
    """The stored rows of some entities (tuples of key values); no TTL applied."""
    return store.read_rows([RowsRequest(group, [entity_key(k) for k in keys])])[0]


def amount(store, card):
    row = stored(store, CARD, [(card,)])[0]
    return None if row is None else row.values["amount_sum"]


def test_latest_event_wins(home, store):
    for i, value in enumerate([1.0, 3.0, 2.0]):
        add_card(home, "a", T0 + minutes([0, 20, 10][i]), value)
    add_card(home, "b", T0, 7.0)
    report = run(home, store)
    assert {g.group: g.candidates for g in report.groups} == {CARD: 2, PAIR: 0}
    row = stored(store, CARD, [("a",)])[0]
    assert row.values["amount_sum"] == 3.0 and row.event_at == T0 + minutes(20)
    assert amount(store, "b") == 7.0


def test_ties_on_event_time_go_to_the_row_loaded_last(home, store):
    add_card(home, "a", T0, 1.0, loaded_at=LOAD)
    add_card(home, "a", T0, 2.0, loaded_at=LOAD + minutes(1))
    run(home, store)
    assert amount(store, "a") == 2.0
    # ... also across refreshes: a correction of the same event loaded later replaces it
    add_card(home, "a", T0, 5.0, loaded_at=LOAD + minutes(2))
    report = run(home, store)
    assert amount(store, "a") == 5.0
    assert {g.group: g.rows_written for g in report.groups}[CARD] == 1


def test_late_arriving_older_event_never_overwrites_a_newer_one(home, store):
    add_card(home, "a", T0 + minutes(30), 2.0, loaded_at=LOAD)
    run(home, store)
    add_card(home, "a", T0, 1.0, loaded_at=LOAD + dt.timedelta(hours=1))  # older event, loaded later
    report = run(home, store)
    card = {g.group: g for g in report.groups}[CARD]
    assert card.mode == "incremental" and card.candidates == 1 and card.rows_written == 0
    row = stored(store, CARD, [("a",)])[0]
    assert row.values["amount_sum"] == 2.0 and row.event_at == T0 + minutes(30)
    # the freshness record keeps the newest event time, and the watermark moves on
    assert store.freshness()[CARD].latest_event_at == T0 + minutes(30)
    assert store.freshness()[CARD].watermark == LOAD + dt.timedelta(hours=1)


def test_ttl_is_applied_at_read_time_relative_to_the_request_time(home, store):
    add_pair(home, "JFK", "LAX", T0, 0.25)
    add_card(home, "a", T0, 1.0)
    run(home, store)
    request = {"tx_id": "t1", "card": "a", "from_airport": "JFK", "to_airport": "LAX", "amount": 3.0}
    as_of = [T0 + minutes(59), T0 + minutes(60), T0 + minutes(61), dt.datetime.now(UTC)]
    found = store.lookup(catalog().view("toy"), [request] * len(as_of), as_of)
    assert [f["pair_share"] for f in found.features] == [0.25, 0.25, None, None]  # the bound itself is valid
    assert [m[1].found for m in found.matches] == [True, True, False, False]
    assert [f["card_amount_sum"] for f in found.features] == [1.0] * 4  # no TTL: never expires


def test_missing_entity_gives_missing_values(home, store):
    add_card(home, "a", T0, 1.0)
    run(home, store)
    rows = stored(store, CARD, [("a",), ("nobody",), (None,)])
    assert rows[0] is not None and rows[1] is None and rows[2] is None


def test_freshness_is_recorded_per_group(home, store):
    add_card(home, "a", T0, 1.0, loaded_at=LOAD)
    add_card(home, "b", T0 + minutes(5), 1.0, loaded_at=LOAD + minutes(1))
    add_pair(home, "JFK", "LAX", T0 + minutes(7), 0.25, loaded_at=LOAD + minutes(2))
    committed = dt.datetime(2024, 3, 1, 8, 30, tzinfo=UTC)
    run(home, store, at=committed)
    fresh = store.freshness()
    assert fresh[CARD].latest_event_at == T0 + minutes(5) and fresh[CARD].watermark == LOAD + minutes(1)
    assert fresh[CARD].materialized_at == committed and fresh[CARD].entities == 2 and fresh[CARD].rows_written == 2
    assert fresh[PAIR].latest_event_at == T0 + minutes(7) and fresh[PAIR].entities == 1
    later = committed + dt.timedelta(hours=1)
    run(home, store, at=later)  # nothing new: the time of the check is still recorded
    assert store.freshness()[CARD].materialized_at == later
    assert store.freshness()[CARD].latest_event_at == T0 + minutes(5)


def test_rematerializing_is_idempotent_and_incremental(home, store):
    for i in range(5):
        add_card(home, f"c{i}", T0 + minutes(i), float(i), loaded_at=LOAD + minutes(i))
    add_pair(home, "JFK", "LAX", T0, 0.25)
    first = run(home, store)
    before = store.read_rows([RowsRequest(CARD, [f"c{i}" for i in range(5)])])
    second = run(home, store)
    assert [g.rows_written for g in second.groups] == [0, 0]
    assert store.read_rows([RowsRequest(CARD, [f"c{i}" for i in range(5)])]) == before
    assert [g.mode for g in first.groups] == ["full", "full"] and [g.mode for g in second.groups] == ["incremental"] * 2
    add_card(home, "c9", T0, 9.0, loaded_at=LOAD + minutes(5))
    third = {g.group: g for g in run(home, store).groups}
    # only rows loaded at or after the watermark (LOAD + 4 min) are read: c4 again, and the new c9
    assert third[CARD].source_rows == 2 and third[CARD].rows_written == 1
    assert store.freshness()[CARD].entities == 6
    full = {g.group: g for g in materialize(home, store, catalog=catalog(), full_refresh=True).groups}
    assert full[CARD].source_rows == 6 and full[CARD].rows_written == 0


def test_values_round_trip_with_their_types(home, store):
    seen = T0 - dt.timedelta(days=3, microseconds=7)
    add_card(home, "a", T0, 12.5, tx_count=3, is_blocked=True, category="travel", last_seen_at=seen,
             opened_on=dt.date(2019, 12, 31))
    add_card(home, "b", T0, None, tx_count=None, is_blocked=None, category=None, last_seen_at=None, opened_on=None)
    run(home, store)
    a, b = stored(store, CARD, [("a",), ("b",)])
    assert a.values == {"amount_sum": 12.5, "tx_count": 3, "is_blocked": True, "category": "travel",
                        "last_seen_at": seen, "opened_on": dt.date(2019, 12, 31)}
    assert b.values == dict.fromkeys(a.values)
    assert a.created_at == LOAD


def test_feature_view_lookup_maps_join_keys_prefixes_and_ttl(home, store):
    add_card(home, "a", T0, 10.0, category="food")
    add_pair(home, "JFK", "LAX", T0, 0.25)
    run(home, store)
    view = catalog().view("toy")
    requests = [{"tx_id": "t1", "card": "a", "from_airport": "JFK", "to_airport": "LAX", "amount": 3.0},
                {"tx_id": "t2", "card": "zz", "from_airport": "JFK", "to_airport": "LAX", "amount": 3.0}]
    found = store.lookup(view, requests, [T0 + minutes(30), T0 + minutes(90)])
    assert found.features[0] == {"card_amount_sum": 10.0, "card_category": "food", "pair_share": 0.25}
    assert found.features[1] == {"card_amount_sum": None, "card_category": None, "pair_share": None}
    assert [m.found for m in found.matches[0]] == [True, True]
    assert found.matches[0][0].age_seconds == 1800.0 and found.matches[0][1].event_at == T0
    assert [m.found for m in found.matches[1]] == [False, False]  # unknown card; route past its TTL


def _refresh(schema: GroupSchema, generation: int, n: int):
    table = pa.table({
        schema.entity[0]: [f"k{i}" for i in range(n)],
        "__event_at": pa.array([T0 + minutes(generation)] * n, pa.timestamp("us", tz="UTC")),
        "__created_at": pa.array([LOAD + minutes(generation)] * n, pa.timestamp("us", tz="UTC")),
        "value": pa.array([float(generation)] * n),
    })
    return GroupRefresh(schema, to_refresh(table, schema), to_us(LOAD + minutes(generation)),
                        to_us(T0 + minutes(generation)), n)


def test_a_reader_never_sees_half_a_refresh(store):
    """Each refresh sets every entity of two groups to its generation; a concurrent reader must only ever see
    one generation across all of them in a single lookup."""
    schemas = [GroupSchema(name, 1, ("key",), (("value", "float"),), None) for name in ("fg_x", "fg_y")]
    n = 300
    store.apply([_refresh(s, 0, n) for s in schemas], LOAD)
    reads = [RowsRequest(s.id, [f"k{i}" for i in range(n)], ["value"]) for s in schemas]
    stop, seen, torn = threading.Event(), set(), []

    def reader() -> None:  # its own thread, so its own SQLite connection
        while not stop.is_set():
            values = {row.values["value"] for rows in store.read_rows(reads) for row in rows}
            seen.update(values)
            if len(values) != 1:
                torn.append(values)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, 16):
            store.apply([_refresh(s, generation, n) for s in schemas], LOAD + minutes(generation))
    finally:
        stop.set()
        thread.join(30)
    assert not torn, f"a lookup saw several refreshes at once: {torn[:3]}"
    assert len(seen) > 1  # the reader did run across refreshes
    final = store.read_rows(reads)
    assert {row.values["value"] for rows in final for row in rows} == {15.0}


def test_a_read_of_one_key_per_group_equals_a_read_of_many(home, store):
    """One key per group (a single request: SQLite reads it with one statement over the tables) gives the
    rows a read of several keys per group gives, a missing entity and a NULL key included."""
    add_card(home, "a", T0, 1.5)
    add_card(home, "b", T0 + minutes(1), 2.5)
    add_pair(home, "JFK", "LAX", T0, 0.25)
    run(home, store)
    pair = entity_key(("JFK", "LAX"))
    for card in ("a", "b", "nobody", None):
        single = store.read_rows([RowsRequest(CARD, [card], ["amount_sum", "category", "last_seen_at"]),
                                  RowsRequest(PAIR, [pair], ["share"]), RowsRequest(CARD, [card])])
        many = store.read_rows([RowsRequest(CARD, [card, "b"], ["amount_sum", "category", "last_seen_at"]),
                                RowsRequest(PAIR, [pair, None], ["share"]), RowsRequest(CARD, [card, "a"])])
        assert single == [[rows[0]] for rows in many]
        assert (single[0][0] is None) == (card not in ("a", "b")) and single[1][0].values == {"share": 0.25}
