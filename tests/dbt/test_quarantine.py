"""Rows that break a validation rule land in quarantine with the rule, and nothing else changes."""

import pytest
import datetime as dt

import pyarrow as pa
from fti_testing import dbt_messages, project_copy, query

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.definitions.dbt_project import run_dbt
from models_ml.features.dbt_runner import build
from models_ml.features.landing import land_batch
from models_ml.features.pipeline import published_relations
from models_ml.offline.store import opened

GOOD_FLIGHT = {
    "year": "2013", "month": "1", "day": "5", "dep_time": "900", "sched_dep_time": "900", "dep_delay": "0",
    "arr_time": "1200", "sched_arr_time": "1200", "arr_delay": "0", "carrier": "UA", "flight": "9999",
    "tailnum": "N14228", "origin": "EWR", "dest": "IAH", "air_time": "200", "distance": "1400", "hour": "9",
    "minute": "0", "time_hour": "2013-01-05T14:00:00Z",
}
BAD_FLIGHTS = {
    "null_key": {"carrier": None},
    "unreadable_delay": {"dep_delay": "soon"},
    "impossible_delay": {"dep_delay": "9999"},
    "departed_without_delay": {"dep_delay": None},
    "schedule_disagrees_with_time_hour": {"time_hour": "2013-01-05T15:00:00Z"},
    "impossible_distance": {"distance": "-5"},
}


def _text_rows(rows: list[dict]) -> pa.Table:
    """Raw rows as the files carry them: every column text."""
    return pa.Table.from_pylist(rows, schema=pa.schema([(c, pa.string()) for c in rows[0]]))


def _published(settings) -> dict[str, list]:
    relations = [*published_relations(load_catalog(settings)),
                 "staging.stg_nycflights__flights", "staging.stg_nycflights__weather"]
    return {r: sorted(query(settings, f"select * from {r}"), key=repr) for r in relations}


@pytest.mark.slow
def test_bad_rows_go_to_quarantine_and_change_nothing_published(scratch_home):
    before = _published(scratch_home)
    existing = query(scratch_home, "select flight_id from staging.stg_nycflights__flights limit 1")[0][0]
    duplicate = query(scratch_home, "select * exclude (_loaded_at, _batch_id) from raw.flights limit 1")
    with opened(scratch_home) as store:
        columns = [c for c in store.columns("raw", "flights") if c not in ("_loaded_at", "_batch_id")]
        bad = [{**GOOD_FLIGHT, **override} for override in BAD_FLIGHTS.values()]
        bad.append(dict(zip(columns, duplicate[0])))
        land_batch(store, "flights", "injected", _text_rows(bad),
                   clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
        land_batch(store, "weather", "injected", _text_rows([{
            "origin": "JFK", "year": "2013", "month": "1", "day": "5", "hour": "3", "temp": "20", "dewp": "10",
            "humid": "50", "wind_dir": "90", "wind_speed": "1048", "wind_gust": None, "precip": "0",
            "pressure": "1010", "visib": "10", "time_hour": "2013-01-05T08:00:00Z",
        }]), clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))

    build(scratch_home, ["build"])

    quarantined = query(
        scratch_home,
        "select source_table, rule_broken from quarantine.quarantined_rows__nycflights where batch_id = 'injected'",
    )
    expected = [("nycflights.flights", rule) for rule in BAD_FLIGHTS] + [
        ("nycflights.flights", "duplicate_key"), ("nycflights.weather", "impossible_wind")]
    assert sorted(quarantined) == sorted(expected)
    assert _published(scratch_home) == before
    assert existing in {r[0] for r in query(scratch_home, "select flight_id from staging.stg_nycflights__flights")}


@pytest.mark.slow
def test_quarantine_keeps_the_raw_record(scratch_home):
    with opened(scratch_home) as store:
        land_batch(store, "flights", "injected", _text_rows([{**GOOD_FLIGHT, "dep_delay": "soon"}]))
    build(scratch_home, ["build"])
    (record,) = query(scratch_home, "select record->>'dep_delay' from quarantine.quarantined_rows__nycflights "
                                    "where batch_id = 'injected'")[0]
    assert record == "soon"


def test_a_base_model_left_out_of_its_domains_quarantine_fails_the_build_naming_it(tmp_path, monkeypatch):
    """The quarantine model lists its base models (dbt records dependencies at parse time), and the macro
    checks the list against the graph, so a new raw table's broken rows cannot be silently missed."""
    project_copy(tmp_path, monkeypatch, "models/staging/fraud/quarantined_rows__fraud.sql",
                 lambda sql: sql.replace("'base_fraud__cards', ", ""))
    run = run_dbt(load_settings(tmp_path / "home"), ["compile", "--select", "quarantined_rows__fraud"])
    messages = dbt_messages(run)
    assert not run.success
    assert ("quarantine of source fraud leaves out base model(s) base_fraud__cards: add them to the list in "
            "quarantined_rows__fraud") in messages
