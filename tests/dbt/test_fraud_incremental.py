"""Fraud features built micro-batch by micro-batch (hourly landings, a dbt build after each) equal one full
refresh on the same data: the windowed incremental logic is exact for cards, merchants (whose chargebacks
arrive days after their transactions) and the label (whose rows appear as transactions mature)."""

from __future__ import annotations

import datetime as dt

import pytest

from fti_testing import land_fraud, table_differences, ticking_clock

from examples.fraud.generator import FraudConfig
from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build

UTC = dt.timezone.utc
# Three-day maturity (generator and label model agree), so 10 days of data already have final labels.
CONFIG = FraudConfig(seed=13, n_transactions=8_000, start=dt.date(2024, 1, 1), days=10, label_maturity_days=3,
                     compromised_card_share=0.08, compromised_merchant_share=0.05, dirty_row_share=0.002)
DBT_VARS = {"fraud_label_maturity_days": 3}
FIRST = dt.datetime(2024, 1, 8, tzinfo=UTC)
MICRO_BATCHES = [dt.datetime(2024, 1, 8, 1, tzinfo=UTC), dt.datetime(2024, 1, 8, 6, tzinfo=UTC)]


def _build(settings, *extra: str) -> None:
    selection = load_catalog(settings).domain("fraud").dbt_selection
    build(settings, ["build", "--select", *selection.split(), *extra], dbt_vars=DBT_VARS)



@pytest.mark.slow
def test_hourly_micro_batches_build_exactly_the_full_refresh(tmp_path):
    micro = load_settings(tmp_path / "micro")
    clock = ticking_clock()
    land_fraud(micro, FIRST, clock, config=CONFIG, batch="hour")
    _build(micro)
    late_chargebacks = 0
    for through in MICRO_BATCHES:
        report = land_fraud(micro, through, clock, config=CONFIG, batch="hour")
        assert report.rows_landed().get("fraud_transactions", 0) > 0
        late_chargebacks += report.rows_landed().get("fraud_chargebacks", 0)
        _build(micro)
    assert late_chargebacks > 0  # labels of days-old transactions arrived in the micro-batches

    bulk = load_settings(tmp_path / "bulk")
    land_fraud(bulk, MICRO_BATCHES[-1], ticking_clock(), config=CONFIG, batch="hour")
    _build(bulk, "--full-refresh")

    view = load_catalog(bulk).view("card_fraud")
    relations = [ref.group.qualified_relation for ref in view.features] + [view.label.qualified_relation]
    for relation in relations:
        count_micro, count_bulk, only_micro, only_bulk = table_differences(micro.warehouse_path, bulk.warehouse_path, relation)
        assert count_bulk > 0, relation
        assert (count_micro, only_micro, only_bulk) == (count_bulk, 0, 0), relation
