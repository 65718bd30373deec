"""The latest-row form equals the latest row of the model it is derived from, on adversarial histories
(rows exactly at, just inside and just outside each window's edge; several events at one instant; chargebacks
reported before their transaction or at a window's edge), and refuses the shapes where it would not."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import pyarrow as pa
import pytest

from models_ml.core.settings import load_settings
from models_ml.streaming.definition import compile_models
from models_ml.streaming.latest_row import NotLatestRowShape, latest_row_form
from models_ml.streaming.updater import CARD, MERCHANT, MODELS, Updater

T0 = dt.datetime(2024, 3, 10, 6, 59, 59)  # naive UTC, as the updater stages times; a DST morning in New York
EDGES = [dt.timedelta(0), dt.timedelta(microseconds=1)]
WINDOWS = [dt.timedelta(minutes=10), dt.timedelta(hours=1), dt.timedelta(hours=24), dt.timedelta(days=7),
           dt.timedelta(days=30)]


def _latest(sql: str, entity: str) -> str:
    return f"select * from ({sql}) qualify row_number() over (partition by {entity} order by event_at desc) = 1"


def _assert_same_latest(con, sql: str, entity: str) -> int:
    full = con.execute(_latest(sql, entity) + " order by all").to_arrow_table()
    last = con.execute(_latest(latest_row_form(sql), entity) + " order by all").to_arrow_table()
    assert last.schema == full.schema
    assert last.to_pylist() == full.to_pylist()
    return full.num_rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return compile_models(load_settings(tmp_path_factory.mktemp("compile") / "home"), MODELS)


def _history(seed: int) -> tuple[pa.Table, pa.Table]:
    """Transactions (staged shape) of 40 cards at 6 merchants, each card's latest at T0, with others at the
    windows' edges (and 1 us either side), several at one instant, the rest random over 40 days; and fraud
    chargebacks, some reported at a window's edge before T0, one reported before its transaction."""
    rng = random.Random(seed)
    rows = []
    for card in range(40):
        times = [T0, T0]  # two transactions at the latest instant
        times += [T0 - w + s * e for w in WINDOWS for e in EDGES for s in (-1, 1) if rng.random() < 0.6]
        times += [T0 - dt.timedelta(seconds=rng.uniform(0, 40 * 86400)) for _ in range(rng.randint(0, 30))]
        for i, at in enumerate(times):
            rows.append({"transaction_id": f"t{card}-{i}", "card_id": f"c{card}", "merchant_id": f"m{card % 6}",
                         "merchant_category": "grocery", "transaction_at": at, "amount": rng.randint(1, 99999) / 100,
                         "latitude": rng.uniform(-90, 90), "longitude": rng.uniform(-180, 180),
                         "loaded_at": at + dt.timedelta(seconds=rng.randint(0, 3600))})
    for row in rows:
        row["amount_cents"] = round(row["amount"] * 100)
    reports = []
    for row in rng.sample(rows, 60):
        reported = row["transaction_at"] + dt.timedelta(days=rng.choice([0, 1, 29, 30]), microseconds=rng.choice([0, 1]))
        reported = min(reported, T0 + dt.timedelta(hours=1))
        reports.append({"transaction_id": row["transaction_id"], "reported_at": reported, "is_fraud": rng.random() < .9,
                        "loaded_at": reported})
    reports.append({**reports[0], "transaction_id": rows[-1]["transaction_id"],  # before its transaction: ignored
                    "reported_at": T0 - dt.timedelta(days=90)})
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(reports)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fraud_models_latest_rows_equal_the_full_models(models, seed):
    transactions, chargebacks = _history(seed)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.register("transactions_rows", transactions)
        con.register("chargebacks_rows", chargebacks)
        inputs = {"stg_fraud__transactions": "transactions_rows", "stg_fraud__chargebacks": "chargebacks_rows"}
        assert _assert_same_latest(con, models[CARD].bound(inputs), "card_id") == 40
        assert _assert_same_latest(con, models[MERCHANT].bound(inputs), "merchant_id") == 6
    finally:
        con.close()


def test_the_updater_uses_the_latest_row_form_of_both_models(models):
    updater = Updater(models, lambda: dt.datetime.now(dt.timezone.utc))
    try:
        assert updater.forms == {CARD: "latest row", MERCHANT: "latest row"}
    finally:
        updater.close()


EVENTS = "select * from (values ('a', 1, 10), ('a', 2, 20), ('a', 5, 40), ('b', 1, 7), ('b', 9, null)) e(k, t, v)"


@pytest.mark.parametrize("select", [
    "select k, t, count(*) over (partition by k order by t range between 2 preceding and current row) as n from e",
    "select k, t, sum(v) over (partition by k order by t) as total, max(v) over (partition by k order by t "
    "range between unbounded preceding and current row) as top from e",
    "select k, t, v + 1 as next_v, sum(v) over w / count(v) over w as mean_v from e "
    "window w as (partition by k order by t range between 3 preceding and current row)",
])
def test_other_supported_shapes_are_exact(select):
    con = duckdb.connect()
    try:
        rows = _assert_same_latest(con, f"with e as ({EVENTS}), w as ({select}) "
                                        f"select k, t as event_at, * exclude (k, t) from w", "k")
        assert rows == 2
    finally:
        con.close()


@pytest.mark.parametrize(("select", "reason"), [
    ("select k, t, sum(v) over (partition by k order by t rows between 1 preceding and current row) as s from e",
     "RANGE"),
    ("select k, t, lag(v) over (partition by k order by t) as s from e", "only sum, count"),
    ("select k, t, sum(v) over (partition by k order by t desc) as s from e", "ascending"),
    ("select k, t, sum(v) over (partition by k order by t) as s, sum(v) over (order by t) as u from e",
     "PARTITION BY"),
    ("select k, t, v - avg(v) over (partition by k order by t) as s from e", "mixes a window"),
    ("select * , sum(v) over (partition by k order by t) as s from e", "selects *"),
])
def test_unsupported_shapes_are_refused_with_the_reason(select, reason):
    with pytest.raises(NotLatestRowShape, match=reason):
        latest_row_form(f"with e as ({EVENTS}), w as ({select}) select k, t as event_at, s from w")


@pytest.mark.parametrize(("after", "reason"), [
    ("select k, t as event_at, s from w where s > 10", "WHERE"),
    ("select k, max(t) as event_at, sum(s) as s from w group by k", "GROUP"),
    ("select w.k, w.t as event_at, s from w join e using (k, t)", "JOIN"),
    ("select k, t as event_at, s from w union all select k, t, v from e", "Union"),
])
def test_what_reads_the_windowed_rows_may_only_project_them(after, reason):
    select = "select k, t, sum(v) over (partition by k order by t) as s from e"
    with pytest.raises(NotLatestRowShape, match=reason):
        latest_row_form(f"with e as ({EVENTS}), w as ({select}) {after}")
