"""The fraud loader lands micro-batches through land_batch: idempotent, continuing, one dataset per home."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from fti_testing import ticking_clock

from examples.fraud import loader
from examples.fraud.generator import FraudConfig, generate

CONFIG = FraudConfig(seed=3, n_transactions=3_000, start=dt.date(2024, 1, 1), days=6, label_maturity_days=3,
                     dirty_row_share=0.003)
UTC = dt.timezone.utc


def _counts(con) -> dict[str, int]:
    return {name: con.execute(f"select count(*) from raw.{table}").fetchone()[0] for name, table in loader.RAW_TABLES.items()}


def test_days_land_once_and_later_calls_continue(tmp_path):
    data = generate(CONFIG)
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        first = loader.land_fraud(con, dt.date(2024, 1, 2), tmp_path / "cache", config=CONFIG, clock=ticking_clock())
        assert {b.batch_id for b in first.batches if b.table == "fraud_transactions"} == {"2024-01-01", "2024-01-02"}
        assert first.rows_landed()["fraud_cards"] == CONFIG.cards
        again = loader.land_fraud(con, dt.date(2024, 1, 2), tmp_path / "cache", clock=ticking_clock())
        assert again.batches == []
        assert loader.next_unlanded_day(con) == dt.date(2024, 1, 3)

        loader.land_through(con, dt.date(2024, 2, 1), tmp_path / "cache")  # the recorded dataset goes on
        counts = _counts(con)
        assert counts["transactions"] == data.transactions.num_rows
        assert counts["chargebacks"] == data.chargebacks.num_rows  # reported up to the maturity after the end
        assert loader.next_unlanded_day(con) == dt.date(2024, 1, 10)
        columns = [r[0] for r in con.execute("describe raw.fraud_transactions").fetchall()]
        assert not {"is_fraud", "fraud_pattern", "dirty_kind"} & set(columns)  # ground truth never lands
        batches = con.execute("select count(*), count(distinct batch_id) from raw._landed_batches "
                              "where table_name = 'fraud_transactions'").fetchone()
        assert batches == (9, 9)  # 6 days of transactions + 3 days of chargebacks only (empty batches)


def test_hour_batches_split_the_same_rows(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        report = loader.land_fraud(con, dt.datetime(2024, 1, 1, 5, tzinfo=UTC), tmp_path / "cache",
                                   config=CONFIG, batch="hour")
        hours = sorted(b.batch_id for b in report.batches if b.table == "fraud_transactions")
        assert hours == [f"2024-01-01T0{h}" for h in range(5)]
        landed = con.execute("select min(transaction_at), max(transaction_at) from raw.fraud_transactions").fetchone()
        assert landed[0] >= CONFIG.start_at and landed[1] < dt.datetime(2024, 1, 1, 5, tzinfo=UTC)


def test_a_home_keeps_one_dataset_and_one_batch_size(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        loader.land_fraud(con, dt.date(2024, 1, 1), tmp_path / "cache", config=CONFIG)
        with pytest.raises(loader.DatasetMismatch, match="not .*seed=4"):
            loader.land_fraud(con, dt.date(2024, 1, 2), tmp_path / "cache",
                              config=FraudConfig(**{**CONFIG.as_dict(), "seed": 4}))
        with pytest.raises(loader.DatasetMismatch, match="day batches, not hour"):
            loader.land_fraud(con, dt.date(2024, 1, 2), tmp_path / "cache", batch="hour")
