"""The offline store's contract, run against every engine behind the door (one parameter per engine)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from models_ml.core.settings import load_settings
from models_ml.core.time import TimeRange
from models_ml.offline.store import (
    BACKENDS,
    CREATED_AT,
    EVENT_AT,
    LatestRows,
    OfflineStore,
    OfflineStoreError,
    backend_class,
    open_offline_store,
    transient_errors,
)

ENGINES = ["duckdb", "spark"]
SLOW_ENGINES = {"spark"}  # a Spark session takes 15-30 s to start (one per test process: tests/offline/conftest.py)
UTC = dt.timezone.utc


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, tzinfo=UTC)


def rows(ids: list[str], days: list[int], scores: list[float]) -> pa.Table:
    return pa.table({
        "entity_id": pa.array(ids, pa.string()),
        "event_at": pa.array([at(d) for d in days], pa.timestamp("us", tz="UTC")),
        "score": pa.array(scores, pa.float64()),
    })


@pytest.fixture(params=[pytest.param(e, marks=pytest.mark.slow) if e in SLOW_ENGINES else e for e in ENGINES])
def store(request, tmp_path):
    if request.param == "spark":  # the process's one session, emptied after each test
        yield request.getfixturevalue("spark_store")
        return
    settings = load_settings(tmp_path / "home")
    settings = type(settings)(**{**settings.__dict__, "offline_store": request.param})
    with open_offline_store(settings) as opened:
        yield opened


def test_every_registered_engine_is_tested():
    assert sorted(BACKENDS) == sorted(ENGINES)


def test_unknown_engine_is_a_one_line_error():
    with pytest.raises(OfflineStoreError, match="unknown offline store 'nope'.*FTI_OFFLINE_STORE"):
        backend_class("nope")


def test_read_only_without_a_warehouse_says_what_to_run(tmp_path):
    with pytest.raises(OfflineStoreError, match="no warehouse at .*fti features run"):
        open_offline_store(load_settings(tmp_path / "empty"), read_only=True)


def test_transient_errors_include_the_engines_lock_error():
    errors = transient_errors()
    assert OSError in errors
    assert all(issubclass(e, BaseException) for e in errors) and len(errors) >= 2


def test_create_table_from_arrow_and_expression_then_list_and_read(store):
    store.create_table("s", "base", rows(["a", "b"], [1, 2], [0.1, 0.2]))
    expr = store.table("s", "base").filter(lambda t: t.score > 0.15)
    store.create_table("s", "derived", expr)
    assert {("s", "base"), ("s", "derived")} <= store.relations()
    assert store.columns("s", "derived") == ["entity_id", "event_at", "score"]
    assert store.columns("s", "absent") is None and not store.exists("s", "absent")
    assert store.to_arrow(store.table("s", "derived"))["entity_id"].to_pylist() == ["b"]
    assert store.arrow_schema("s", "base").field("event_at").type == pa.timestamp("us", tz="UTC")
    with pytest.raises(Exception):
        store.create_table("s", "base", rows(["c"], [3], [0.3]))  # exists, not overwritten
    store.create_table("s", "base", rows(["c"], [3], [0.3]), overwrite=True)
    assert store.scalar('select count(*) from "s"."base"') == 1


def test_replace_window_replaces_the_window_and_moved_entities_only(store):
    window = TimeRange(at(2), at(3))
    first = store.replace_window("p", "t", rows(["a", "b", "c"], [1, 2, 2], [1.0, 2.0, 3.0]),
                                 time_column="event_at", window=TimeRange(at(1), at(3)), keys=["entity_id"])
    assert (first.deleted, first.inserted) == (0, 3)
    # b is re-scored in the window; a moved from day 1 into the window; c is not written again: gone
    again = store.replace_window("p", "t", rows(["a", "b"], [2, 2], [10.0, 20.0]),
                                 time_column="event_at", window=window, keys=["entity_id"])
    assert (again.deleted, again.inserted) == (3, 2)
    got = store.query('select entity_id, score from "p"."t" order by entity_id')
    assert got == [{"entity_id": "a", "score": 10.0}, {"entity_id": "b", "score": 20.0}]
    repeat = store.replace_window("p", "t", rows(["a", "b"], [2, 2], [10.0, 20.0]),
                                  time_column="event_at", window=window, keys=["entity_id"])
    assert (repeat.deleted, repeat.inserted) == (2, 2)  # idempotent
    with pytest.raises(OfflineStoreError, match="has columns"):
        store.replace_window("p", "t", rows(["a"], [2], [1.0]).drop_columns(["score"]),
                             time_column="event_at", window=window, keys=["entity_id"])


def test_a_failed_replace_leaves_the_previous_rows(store, monkeypatch):
    window = TimeRange(at(1), at(3))
    store.replace_window("p", "t", rows(["a"], [1], [1.0]), time_column="event_at", window=window, keys=["entity_id"])

    def fail(*args):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(store, "_insert_rows", fail)
    with pytest.raises(RuntimeError, match="half-way"):
        store.replace_window("p", "t", rows(["b"], [2], [2.0]), time_column="event_at", window=window,
                             keys=["entity_id"])
    assert store.query('select entity_id from "p"."t"') == [{"entity_id": "a"}]


def test_insert_appends_by_name_and_transactions_roll_back_together(store):
    assert store.insert("raw", "events", rows(["a"], [1], [1.0])) == 1
    assert store.insert("raw", "events", rows(["b"], [2], [2.0]).select(["score", "event_at", "entity_id"])) == 1
    if store.transactional:
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.insert("raw", "events", rows(["c"], [3], [3.0]))
                store.execute('delete from "raw"."events" where entity_id = ?', ["a"])
                raise RuntimeError("abort")
    else:  # refused in one line that names the fix, before anything runs
        with pytest.raises(OfflineStoreError, match="without transactions.*FTI_OFFLINE_STORE=duckdb"):
            with store.transaction():
                store.insert("raw", "events", rows(["c"], [3], [3.0]))
        for statement in ('delete from "raw"."events" where entity_id = ?', "update raw.events set score = ?"):
            with pytest.raises(OfflineStoreError, match=r"cannot (delete|update) rows .*FTI_OFFLINE_STORE=duckdb"):
                store.execute(statement, [1.0])
    assert store.scalar('select string_agg(entity_id, \',\' order by entity_id) from "raw"."events"') == "a,b"
    store.execute("create table raw.ledger (k varchar, n bigint)")
    store.executemany("insert into raw.ledger values (?, ?)", [("x", 1), ("y", 2)])
    assert store.execute("insert into raw.ledger values (?, ?), (?, ?)", ["z", 3, "w", 4]) == [(2,)]
    if store.transactional:
        assert store.execute("update raw.ledger set n = n + 1 where k = ?", ["x"]) == [(1,)]
    store.rename_table("raw", "ledger", "ledger2")
    assert store.query("select k, n from raw.ledger2 where k in ('x', 'y') order by k") == [
        {"k": "x", "n": 2 if store.transactional else 1}, {"k": "y", "n": 2}]
    store.drop_table("raw", "ledger2")
    store.drop_table("raw", "ledger2")  # dropping an absent table is a no-op
    assert not store.exists("raw", "ledger2")


def test_arrow_schema_of_a_missing_relation_is_the_doors_error(store):
    with pytest.raises(OfflineStoreError, match="no relation s.absent"):
        store.arrow_schema("s", "absent")
    store.create_table("s", "present", rows(["a"], [1], [1.0]))
    with pytest.raises(OfflineStoreError, match="no relation nope.present"):
        store.arrow_schema("nope", "present")


# -- latest_rows: the engine's version and the portable one give the same Arrow table ------------------

def versions(store, schema: str, name: str, **options) -> LatestRows:
    """``latest_rows`` as the engine runs it, checked against the portable Ibis version of the base class:
    the same rows (in key order: neither promises one), types and statistics."""
    engine = store.latest_rows(schema, name, **options)
    portable = OfflineStore.latest_rows(store, schema, name, **options)
    order = [(k, "ascending") for k in options["keys"]]
    assert engine.rows.sort_by(order).equals(portable.rows.sort_by(order), check_metadata=True)
    assert (engine.rows_read, engine.max_event, engine.max_created) == (
        portable.rows_read, portable.max_event, portable.max_created)
    return LatestRows(engine.rows.sort_by(order), engine.rows_read, engine.max_event, engine.max_created)


def loaded(entries: list[tuple]) -> pa.Table:
    """(entity, event day, loaded day or None, score, tag) rows, the entity id possibly None."""
    return pa.table({
        "entity_id": pa.array([e[0] for e in entries], pa.string()),
        "event_at": pa.array([at(e[1]) if e[1] else None for e in entries], pa.timestamp("us", tz="UTC")),
        "loaded_at": pa.array([at(e[2]) if e[2] else None for e in entries], pa.timestamp("us", tz="UTC")),
        "score": pa.array([e[3] for e in entries], pa.float64()),
        "tag": pa.array([e[4] for e in entries], pa.string()),
    })


TIES = loaded([
    ("later_event", 3, 5, 1.0, "x"), ("later_event", 4, 4, 0.0, "won"),  # the later event wins, loaded earlier
    ("later_load", 3, 5, 1.0, "x"), ("later_load", 3, 6, 0.0, "won"),  # same event: the later load wins
    ("null_load", 3, None, 9.0, "x"), ("null_load", 3, 5, 0.0, "won"),  # a NULL load loses to any load
    ("larger", 3, 5, 1.0, "x"), ("larger", 3, 5, 2.0, "won"),  # then the larger feature value
    ("null_score", 3, 5, None, "x"), ("null_score", 3, 5, 1.0, "won"),  # a NULL value loses
    ("tag", 3, 5, 1.0, "a"), ("tag", 3, 5, 1.0, "won"),  # then the next tie-break column
    (None, 9, 9, 1.0, "no key"), ("no_event", None, 9, 1.0, "no event"),  # take no part, but are counted
])
LATEST = dict(keys=["entity_id"], event_time="event_at", created_time="loaded_at",
              columns=["entity_id", "score", "tag"], tie_break=["score", "tag"])


def test_latest_rows_keeps_the_tie_rules_winner_per_entity(store):
    store.create_table("f", "ties", TIES)
    got = versions(store, "f", "ties", **LATEST)
    assert got.rows.column_names == ["entity_id", "score", "tag", EVENT_AT, CREATED_AT]
    assert got.rows[EVENT_AT].type == got.rows[CREATED_AT].type == pa.timestamp("us", tz="UTC")
    assert got.rows["entity_id"].to_pylist() == sorted(
        ["later_event", "later_load", "null_load", "larger", "null_score", "tag"])
    assert set(got.rows["tag"].to_pylist()) == {"won"}
    by_entity = {r["entity_id"]: r for r in got.rows.to_pylist()}
    assert by_entity["later_event"][EVENT_AT] == at(4) and by_entity["later_load"][CREATED_AT] == at(6)
    assert (got.rows_read, got.max_event, got.max_created) == (TIES.num_rows, at(9), at(9))


def test_latest_rows_since_a_watermark_reads_later_and_unknown_loads_only(store):
    store.create_table("f", "ties", TIES)
    got = versions(store, "f", "ties", **LATEST, since=at(6))
    # loaded on day 6 or later, or at an unknown time; the NULL-load row wins now that its rival is not read
    assert {r["entity_id"]: r["score"] for r in got.rows.to_pylist()} == {"later_load": 0.0, "null_load": 9.0}
    assert (got.rows_read, got.max_event, got.max_created) == (4, at(9), at(9))
    whole = versions(store, "f", "ties", **{**LATEST, "created_time": None}, since=at(6))  # no load time: all
    assert whole.rows_read == TIES.num_rows and whole.max_created is None
    assert whole.rows[CREATED_AT].null_count == whole.rows.num_rows


def test_latest_rows_with_nothing_to_read_is_empty_with_the_same_columns(store):
    store.create_table("f", "ties", TIES.filter(pc.is_valid(TIES["loaded_at"])))
    store.create_table("f", "empty", TIES.slice(0, 0))
    for name, since in [("ties", at(10)), ("empty", None)]:
        got = versions(store, "f", name, **LATEST, since=since)
        assert got.rows.num_rows == 0
        assert got.rows.column_names == ["entity_id", "score", "tag", EVENT_AT, CREATED_AT]
        assert (got.rows_read, got.max_event, got.max_created) == (0, None, None)
