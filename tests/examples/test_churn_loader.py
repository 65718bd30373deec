"""The churn loader lands one UTC day per batch through land_batch: idempotent, continuing, one dataset per
home, the generated types, every row exactly once and never the ground truth."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fti_testing import ticking_clock

from examples.churn import loader
from examples.churn.generator import ChurnConfig, generate
from models_ml.core.settings import load_settings
from models_ml.offline.store import opened

CONFIG = ChurnConfig(seed=3, start=dt.date(2024, 1, 1), days=6, n_initial_customers=40, n_new_customers=30,
                     dirty_row_share=0.01)


def _counts(store) -> dict[str, int]:
    return {name: store.scalar(f"select count(*) from raw.{table}") for name, table in loader.RAW_TABLES.items()}


@pytest.fixture()
def store(tmp_path):
    with opened(load_settings(tmp_path / "home")) as store:
        yield store


def test_days_land_once_and_later_calls_continue(store, tmp_path):
    data = generate(CONFIG)
    first = loader.land_churn(store, dt.date(2024, 1, 2), tmp_path / "cache", config=CONFIG, clock=ticking_clock())
    for table in loader.RAW_TABLES.values():
        assert {b.batch_id for b in first.batches if b.table == table} == {"2024-01-01", "2024-01-02"}, table
    again = loader.land_churn(store, dt.date(2024, 1, 2), tmp_path / "cache", clock=ticking_clock())
    assert again.batches == []
    before = _counts(store)
    assert loader.next_unlanded_day(store) == dt.date(2024, 1, 3)

    loader.land_through(store, dt.date(2024, 2, 1), tmp_path / "cache")  # the recorded dataset goes on
    assert loader.land_through(store, dt.date(2024, 2, 1), tmp_path / "cache").batches == []
    counts = _counts(store)
    assert counts == {name: table.num_rows for name, table in data.tables().items()}  # every row, once
    assert all(counts[name] >= before[name] for name in counts)
    assert loader.next_unlanded_day(store) == dt.date(2024, 1, 7)  # the day after the period
    batches = store.execute("select table_name, count(*), count(distinct batch_id) from raw._landed_batches "
                            "where table_name like 'churn\\_%' escape '\\' and table_name <> 'churn_dataset' "
                            "group by all")
    assert sorted(batches) == sorted((table, 6, 6) for table in loader.RAW_TABLES.values())  # empty days too
    for table in loader.RAW_TABLES.values():
        assert "dirty_kind" not in store.columns("raw", table)


def test_a_customer_lands_on_its_signup_day_and_the_earlier_ones_with_the_first_day(store, tmp_path):
    loader.land_churn(store, CONFIG.last_day, tmp_path / "cache", config=CONFIG, clock=ticking_clock())
    wrong = store.execute("""
        select count(*) from raw.churn_customers
        where _batch_id <> greatest((signup_at at time zone 'UTC')::date, date '2024-01-01')::varchar""")
    assert wrong == [(0,)]
    (initial,), = store.execute("select count(*) from raw.churn_customers where signup_at < '2024-01-01'::timestamptz")
    assert initial >= CONFIG.n_initial_customers
    wrong_usage = store.execute("select count(*) from raw.churn_usage where _batch_id <> usage_date::varchar")
    assert wrong_usage == [(0,)]


def test_raw_columns_keep_the_generated_types(store, tmp_path):
    loader.land_churn(store, dt.date(2024, 1, 1), tmp_path / "cache", config=CONFIG)
    data = generate(CONFIG)
    for name, table in loader.RAW_TABLES.items():
        landed = store.arrow_schema("raw", table)
        expected = data.tables()[name].drop_columns(list(loader.GROUND_TRUTH)).schema
        assert landed.names == [*expected.names, "_loaded_at", "_batch_id"], name
        assert [landed.field(n).type for n in expected.names] == list(expected.types), name
    assert store.arrow_schema("raw", "churn_usage").field("usage_date").type == pa.date32()
    dirty = data.usage.filter(pc.equal(data.usage["usage_date"], pa.scalar(dt.date(2024, 1, 1), pa.date32())))
    assert store.scalar("select count(*) from raw.churn_usage") == dirty.num_rows


def test_a_home_keeps_one_dataset_and_lands_whole_days(store, tmp_path):
    loader.land_churn(store, dt.date(2024, 1, 1), tmp_path / "cache", config=CONFIG)
    with pytest.raises(loader.DatasetMismatch, match="not .*seed=4"):
        loader.land_churn(store, dt.date(2024, 1, 2), tmp_path / "cache",
                          config=ChurnConfig(**{**CONFIG.as_dict(), "seed": 4}))
    with pytest.raises(TypeError, match="whole UTC days"):
        loader.land_churn(store, dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), tmp_path / "cache")
