"""Churn features, label and inference spine built day by day (a dbt build after each landing) equal one
build of all the data: window exits that fall due as the data clock advances, label months whose outcome
becomes known and spine months that start are all picked up exactly by the incremental runs."""

from __future__ import annotations

import datetime as dt

import pytest
from fti_testing import CHURN_CLOCK_START, CHURN_TEST_CONFIG, land_churn, table_differences, ticking_clock

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.features.pipeline import published_relations

# Day by day across the boundaries that matter (2024-01-30 lands: January's outcome is known; 2024-01-31:
# February starts; 2024-03-01: February's outcome), with jumps of many days between them.
STEPS = [dt.date(2024, 1, 29), dt.date(2024, 1, 30), dt.date(2024, 1, 31), dt.date(2024, 2, 1),
         dt.date(2024, 2, 29), dt.date(2024, 3, 1), CHURN_TEST_CONFIG.last_day]


@pytest.mark.slow
def test_daily_builds_equal_one_build_of_all_the_data(tmp_path, churn_home):
    daily = load_settings(tmp_path / "daily")
    clock = ticking_clock(CHURN_CLOCK_START)  # the same ingestion times as churn_home's single landing
    selection = load_catalog(daily).domain("churn").dbt_selection
    labelled = []
    for through in STEPS:
        land_churn(daily, through, clock)
        # `dbt run` between landings (the models' incremental logic is the same), `dbt build` at the end:
        # its tests then check the state the daily runs left, at a third of the cost of testing every step.
        command = "build" if through == STEPS[-1] else "run"
        build(daily, [command, "--select", *selection.split()])
        labelled.append(table_differences(daily.warehouse_path, daily.warehouse_path,
                                          "labels.label_customer__churn")[0])
    assert labelled[0] == 0 < labelled[1] == labelled[4] < labelled[5]  # January known on the 30th, then February

    relations = [*published_relations(load_catalog(churn_home), domains=["churn"]), "quarantine.quarantined_rows__churn"]
    assert len(relations) == 6
    for relation in relations:
        count_daily, count_bulk, only_daily, only_bulk = table_differences(
            daily.warehouse_path, churn_home.warehouse_path, relation)
        assert count_bulk > 0, relation
        assert (count_daily, only_daily, only_bulk) == (count_bulk, 0, 0), relation
