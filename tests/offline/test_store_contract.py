"""The offline store's contract, run against every engine behind the door (one parameter per engine)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from models_ml.core.settings import load_settings
from models_ml.core.time import TimeRange
from models_ml.offline.store import (
    BACKENDS,
    OfflineStoreError,
    backend_class,
    open_offline_store,
    transient_errors,
)

ENGINES = ["duckdb"]
UTC = dt.timezone.utc


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, tzinfo=UTC)


def rows(ids: list[str], days: list[int], scores: list[float]) -> pa.Table:
    return pa.table({
        "entity_id": pa.array(ids, pa.string()),
        "event_at": pa.array([at(d) for d in days], pa.timestamp("us", tz="UTC")),
        "score": pa.array(scores, pa.float64()),
    })


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
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
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.insert("raw", "events", rows(["c"], [3], [3.0]))
            store.execute('delete from "raw"."events" where entity_id = ?', ["a"])
            raise RuntimeError("abort")
    assert store.scalar('select string_agg(entity_id, \',\' order by entity_id) from "raw"."events"') == "a,b"
    store.execute("create table raw.ledger (k varchar, n bigint)")
    store.executemany("insert into raw.ledger values (?, ?)", [("x", 1), ("y", 2)])
    assert store.execute("update raw.ledger set n = n + 1 where k = ?", ["x"]) == [(1,)]
    store.rename_table("raw", "ledger", "ledger2")
    assert store.query("select k, n from raw.ledger2 order by k") == [{"k": "x", "n": 2}, {"k": "y", "n": 2}]
    store.drop_table("raw", "ledger2")
    store.drop_table("raw", "ledger2")  # dropping an absent table is a no-op
    assert not store.exists("raw", "ledger2")
