"""The fraud loader lands micro-batches through land_batch: idempotent, continuing, one dataset per home."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from fti_testing import ticking_clock

from examples.fraud import loader
from examples.fraud.generator import FraudConfig, generate
from models_ml.core.settings import load_settings
from models_ml.offline.store import opened

CONFIG = FraudConfig(seed=3, n_transactions=3_000, start=dt.date(2024, 1, 1), days=6, label_maturity_days=3,
                     dirty_row_share=0.003)
UTC = dt.timezone.utc


def _counts(store) -> dict[str, int]:
    return {name: store.scalar(f"select count(*) from raw.{table}") for name, table in loader.RAW_TABLES.items()}


@pytest.fixture()
def store(tmp_path):
    with opened(load_settings(tmp_path / "home")) as store:
        yield store


def test_days_land_once_and_later_calls_continue(store, tmp_path):
    data = generate(CONFIG)
    first = loader.land_fraud(store, dt.date(2024, 1, 2), tmp_path / "cache", config=CONFIG, clock=ticking_clock())
    assert {b.batch_id for b in first.batches if b.table == "fraud_transactions"} == {"2024-01-01", "2024-01-02"}
    assert first.rows_landed()["fraud_cards"] == CONFIG.cards
    again = loader.land_fraud(store, dt.date(2024, 1, 2), tmp_path / "cache", clock=ticking_clock())
    assert again.batches == []
    assert loader.next_unlanded_day(store) == dt.date(2024, 1, 3)

    loader.land_through(store, dt.date(2024, 2, 1), tmp_path / "cache")  # the recorded dataset goes on
    counts = _counts(store)
    assert counts["transactions"] == data.transactions.num_rows
    assert counts["chargebacks"] == data.chargebacks.num_rows  # reported up to the maturity after the end
    assert loader.next_unlanded_day(store) == dt.date(2024, 1, 10)
    assert not {"is_fraud", "fraud_pattern", "dirty_kind"} & set(store.columns("raw", "fraud_transactions"))
    batches = store.execute("select count(*), count(distinct batch_id) from raw._landed_batches "
                            "where table_name = 'fraud_transactions'")
    assert batches == [(9, 9)]  # 6 days of transactions + 3 days of chargebacks only (empty batches)


def test_raw_columns_keep_the_generated_types(store, tmp_path):
    loader.land_fraud(store, dt.date(2024, 1, 1), tmp_path / "cache", config=CONFIG)
    data = generate(CONFIG)
    landed = store.arrow_schema("raw", "fraud_transactions")
    expected = data.transactions.drop_columns(list(loader.GROUND_TRUTH)).schema
    assert landed.names == [*expected.names, "_loaded_at", "_batch_id"]
    assert [landed.field(n).type for n in expected.names] == list(expected.types)
    assert landed.field("_loaded_at").type == pa.timestamp("us", tz="UTC")


def test_hour_batches_split_the_same_rows(store, tmp_path):
    report = loader.land_fraud(store, dt.datetime(2024, 1, 1, 5, tzinfo=UTC), tmp_path / "cache",
                               config=CONFIG, batch="hour")
    hours = sorted(b.batch_id for b in report.batches if b.table == "fraud_transactions")
    assert hours == [f"2024-01-01T0{h}" for h in range(5)]
    (first, last), = store.execute("select min(transaction_at), max(transaction_at) from raw.fraud_transactions")
    assert first >= CONFIG.start_at and last < dt.datetime(2024, 1, 1, 5, tzinfo=UTC)


def test_a_home_keeps_one_dataset_and_one_batch_size(store, tmp_path):
    loader.land_fraud(store, dt.date(2024, 1, 1), tmp_path / "cache", config=CONFIG)
    with pytest.raises(loader.DatasetMismatch, match="not .*seed=4"):
        loader.land_fraud(store, dt.date(2024, 1, 2), tmp_path / "cache",
                          config=FraudConfig(**{**CONFIG.as_dict(), "seed": 4}))
    with pytest.raises(loader.DatasetMismatch, match="day batches, not hour"):
        loader.land_fraud(store, dt.date(2024, 1, 2), tmp_path / "cache", batch="hour")
