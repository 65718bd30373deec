"""Landing and building one day at a time gives exactly the tables of one full refresh on the same data.

Every day of the month is built incrementally and every published table is compared. The data tests, which
decide nothing about the tables' contents, run on the incremental state once a week and on the last day
(`dbt build`); the other days use `dbt run`, which builds the same models with the same incremental SQL at
less than half the cost.
"""

import datetime as dt

import pytest
from fti_testing import land, land_fraud, table_differences, ticking_clock

from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.features.pipeline import published_relations

MONTH_START = dt.date(2013, 1, 1)
MONTH_END = dt.date(2013, 1, 31)
DOMAINS = ["flights", "fraud"]  # the domains this test lands; only what their data feeds is built and compared


def with_data_tests(day: dt.date) -> bool:
    """The days whose incremental build also runs the data tests: the first, one a week, and the last."""
    return (day - MONTH_START).days % 7 == 0 or day == MONTH_END


@pytest.mark.slow
def test_daily_incremental_builds_equal_one_full_refresh(tmp_path):
    # Both examples: the flights of January, and the tiny fraud dataset (whose batches run to 2013-02-10).
    daily = load_settings(tmp_path / "daily")
    catalog = load_catalog(daily)
    selection = [part for domain in DOMAINS for part in catalog.domain(domain).dbt_selection.split()]
    clock, fraud_clock = ticking_clock(), ticking_clock(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    day = MONTH_START
    while day <= MONTH_END:
        land(daily, day, clock, start=MONTH_START)
        land_fraud(daily, day, fraud_clock)
        build(daily, ["build" if with_data_tests(day) else "run", "--select", *selection])
        day += dt.timedelta(days=1)

    bulk = load_settings(tmp_path / "bulk")
    land(bulk, MONTH_END, ticking_clock(), start=MONTH_START)
    land_fraud(bulk, MONTH_END, ticking_clock(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)))
    build(bulk, ["build", "--select", *selection, "--full-refresh"])

    for relation in published_relations(load_catalog(bulk), domains=DOMAINS):
        count_daily, count_bulk, only_daily, only_bulk = table_differences(
            daily.warehouse_path, bulk.warehouse_path, relation
        )
        assert count_bulk > 0, relation
        assert (count_daily, only_daily, only_bulk) == (count_bulk, 0, 0), relation
