"""Rows that break a validation rule land in quarantine with the rule, and nothing else changes."""

import datetime as dt

import duckdb
from fti_testing import query

from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.features.landing import land_batch
from models_ml.features.pipeline import published_relations

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


def _values_sql(rows: list[dict]) -> str:
    columns = list(rows[0])
    literal = lambda v: "null::varchar" if v is None else "'" + str(v).replace("'", "''") + "'"  # noqa: E731
    selects = [", ".join(f"{literal(r[c])} as {c}" for c in columns) for r in rows]
    return " union all ".join(f"select {s}" for s in selects)


def _published(settings) -> dict[str, list]:
    relations = [*published_relations(load_catalog(settings)),
                 "staging.stg_nycflights__flights", "staging.stg_nycflights__weather"]
    return {r: sorted(query(settings, f"select * from {r}"), key=repr) for r in relations}


def test_bad_rows_go_to_quarantine_and_change_nothing_published(scratch_home):
    before = _published(scratch_home)
    existing = query(scratch_home, "select flight_id from staging.stg_nycflights__flights limit 1")[0][0]
    duplicate = query(scratch_home, "select * exclude (_loaded_at, _batch_id) from raw.flights limit 1")
    with duckdb.connect(str(scratch_home.warehouse_path)) as con:
        columns = [c[0] for c in con.execute("select * exclude (_loaded_at, _batch_id) from raw.flights limit 0").description]
        bad = [{**GOOD_FLIGHT, **override} for override in BAD_FLIGHTS.values()]
        bad.append(dict(zip(columns, duplicate[0])))
        land_batch(con, "flights", "injected", _values_sql(bad),
                   clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
        land_batch(con, "weather", "injected",
                   "select 'JFK' as origin, '2013' as year, '1' as month, '5' as day, '3' as hour, '20' as temp, "
                   "'10' as dewp, '50' as humid, '90' as wind_dir, '1048' as wind_speed, null as wind_gust, "
                   "'0' as precip, '1010' as pressure, '10' as visib, '2013-01-05T08:00:00Z' as time_hour",
                   clock=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))

    build(scratch_home, ["build"])

    quarantined = query(
        scratch_home,
        "select source_table, rule_broken from quarantine.quarantined_rows where batch_id = 'injected'",
    )
    expected = [("nycflights.flights", rule) for rule in BAD_FLIGHTS] + [
        ("nycflights.flights", "duplicate_key"), ("nycflights.weather", "impossible_wind")]
    assert sorted(quarantined) == sorted(expected)
    assert _published(scratch_home) == before
    assert existing in {r[0] for r in query(scratch_home, "select flight_id from staging.stg_nycflights__flights")}


def test_quarantine_keeps_the_raw_record(scratch_home):
    with duckdb.connect(str(scratch_home.warehouse_path)) as con:
        land_batch(con, "flights", "injected", _values_sql([{**GOOD_FLIGHT, "dep_delay": "soon"}]))
    build(scratch_home, ["build"])
    (record,) = query(scratch_home, "select record->>'dep_delay' from quarantine.quarantined_rows "
                                    "where batch_id = 'injected'")[0]
    assert record == "soon"
