"""No leak in the churn training snapshot: every feature a row gets is what the data said at its prediction
time (the month start), recomputed here from staging; and data from after the prediction time, landed
later, changes nothing in the snapshot."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from fti_testing import copy_home, query

import models_ml
from models_ml.features.dbt_runner import build
from models_ml.features.landing import land_batch
from models_ml.offline.store import opened

UTC = dt.timezone.utc
WINDOW = models_ml.TimeRange.of("2024-01-01", "2024-03-01")  # the two month starts with known outcomes

# The events each group's rows come from, the signup first (a customer without any at or before t has no
# row yet: NULL; with the signup, every customer of the spine has one).
SIGNUPS = "select customer_id, signup_at as at from staging.stg_churn__customers union all "
GROUP_EVENTS = {
    "usage": SIGNUPS + "select customer_id, day_end_at from staging.stg_churn__usage",
    "billing_support": SIGNUPS + "select customer_id, attempted_at from staging.stg_churn__payments "
                                 "union all select customer_id, opened_at from staging.stg_churn__tickets",
}
# snapshot column -> (group, staging relation, time column, aggregate over the window (t - days, t], days)
RECOMPUTED = {
    "customer_session_count_7d": ("usage", "stg_churn__usage", "day_end_at", "sum(sessions)", 7),
    "customer_session_count_30d": ("usage", "stg_churn__usage", "day_end_at", "sum(sessions)", 30),
    "customer_minutes_used_30d": ("usage", "stg_churn__usage", "day_end_at", "sum(minutes_used)", 30),
    "customer_active_days_7d": ("usage", "stg_churn__usage", "day_end_at", "count(*)", 7),
    "customer_failed_payment_count_30d": ("billing_support", "stg_churn__payments", "attempted_at",
                                          "count(*) filter (where not succeeded)", 30),
    "customer_payment_count_90d": ("billing_support", "stg_churn__payments", "attempted_at", "count(*)", 90),
    "customer_ticket_count_30d": ("billing_support", "stg_churn__tickets", "opened_at", "count(*)", 30),
    "customer_max_ticket_severity_30d": ("billing_support", "stg_churn__tickets", "opened_at",
                                         "max(severity_level)", 30),
}


def _snapshot(home):
    view = models_ml.load_catalog(home).view("customer_churn")
    with opened(home) as store:
        return models_ml.build_snapshot(store, view, WINDOW)


@pytest.fixture(scope="module")
def home(churn_home, tmp_path_factory):
    return copy_home(churn_home, tmp_path_factory.mktemp("churn-pit") / "home")


@pytest.fixture(scope="module")
def snapshot(home):
    return _snapshot(home)


def test_every_feature_is_what_staging_said_at_the_prediction_time(home, snapshot):
    table = f"snapshots.{snapshot.snapshot_id}"
    (rows, months), = query(home, f"select count(*), count(distinct prediction_at) from {table}")
    assert rows == snapshot.row_count > 500 and months == 2
    for column, (group, relation, time_column, aggregate, days) in RECOMPUTED.items():
        (wrong, nonzero, missing), = query(home, f"""
            with s as (select customer_id, prediction_at, {column} as value from {table}),
                 g as ({GROUP_EVENTS[group]})
            select count(*) filter (where value is distinct from expected), count(*) filter (where value <> 0),
                   count(*) filter (where value is null)
            from (
                select s.value, case
                    when not exists (select 1 from g where g.customer_id = s.customer_id and g.at <= s.prediction_at)
                        then null
                    else coalesce((select {aggregate} from staging.{relation} as e
                                   where e.customer_id = s.customer_id
                                     and e.{time_column} > s.prediction_at - interval {days} days
                                     and e.{time_column} <= s.prediction_at), 0)
                    end as expected
                from s)""")
        assert wrong == 0, column
        assert nonzero > 5 and missing == 0, column  # a customer's counts are known from its signup
    (wrong_days, with_days), = query(home, f"""
        select count(*) filter (where abs(coalesce(days_since_last_use, -1) - coalesce(
                   (select epoch(s.prediction_at - max(u.day_end_at)) / 86400 from staging.stg_churn__usage u
                    where u.customer_id = s.customer_id and u.day_end_at <= s.prediction_at), -1)) > 1e-9),
               count(days_since_last_use)
        from {table} s""")
    assert wrong_days == 0 and with_days > 250  # February (January has no usage before it)
    (wrong_profile,), = query(home, f"""
        select count(*) from {table} s join staging.stg_churn__customers c using (customer_id)
        where s.customer_monthly_price is distinct from c.monthly_price or s.plan is distinct from c.plan""")
    assert wrong_profile == 0
    # Teeth: the windows moved on between a customer's last event and the prediction for many rows, so a
    # join that took a stale row (no exits) or a later one would have been caught above.
    (moved,), = query(home, f"""
        select count(*) from {table}
        where customer_session_count_7d = 0 and customer_session_count_30d > 0""")
    assert moved > 3


def _future_rows(home) -> dict[str, pa.Table]:
    """Heavy use, failed payments and critical tickets for a few customers, all after 2024-02-01 00:00."""
    customers = [r[0] for r in query(home, """
        select customer_id from spines.spine_customer__active where prediction_at = '2024-02-01'::timestamptz
        order by customer_id limit 25""")]
    used = {(c, d) for c, d in query(home, "select customer_id, usage_date from staging.stg_churn__usage")}
    usage = [{"customer_id": c, "usage_date": dt.date(2024, 2, day), "sessions": 40, "minutes_used": 900}
             for c in customers for day in range(1, 20) if (c, dt.date(2024, 2, day)) not in used]
    at = dt.datetime(2024, 2, 1, 0, 0, 1, tzinfo=UTC)
    payments = [{"payment_id": f"injected_{i}", "customer_id": c, "attempted_at": at + dt.timedelta(hours=i),
                 "amount": 15.99, "succeeded": False} for i, c in enumerate(customers)]
    tickets = [{"ticket_id": f"injected_{i}", "customer_id": c, "opened_at": at + dt.timedelta(minutes=i),
                "category": "billing", "severity": "critical"} for i, c in enumerate(customers)]
    ts = pa.timestamp("us", tz="UTC")
    return {
        "churn_usage": pa.Table.from_pylist(usage, pa.schema([("customer_id", pa.string()), ("usage_date", pa.date32()),
                                                               ("sessions", pa.int64()), ("minutes_used", pa.int64())])),
        "churn_payments": pa.Table.from_pylist(payments, pa.schema([
            ("payment_id", pa.string()), ("customer_id", pa.string()), ("attempted_at", ts),
            ("amount", pa.float64()), ("succeeded", pa.bool_())])),
        "churn_tickets": pa.Table.from_pylist(tickets, pa.schema([
            ("ticket_id", pa.string()), ("customer_id", pa.string()), ("opened_at", ts),
            ("category", pa.string()), ("severity", pa.string())])),
    }


@pytest.mark.slow
def test_data_from_after_the_prediction_time_changes_nothing_in_the_snapshot(home, snapshot):
    before = query(home, "select count(*), sum(session_count_30d) from features.fg_customer__usage_v1")
    future = _future_rows(home)
    with opened(home) as store:
        for table, rows in future.items():
            land_batch(store, table, "injected", rows, clock=lambda: dt.datetime(2030, 1, 1, tzinfo=UTC))
    build(home, ["build", "--select", "source:churn+"])
    after = query(home, "select count(*), sum(session_count_30d) from features.fg_customer__usage_v1")
    assert after != before  # the future data reached the feature tables...
    (failed,), = query(home, """
        select count(*) from features.fg_customer__billing_support_v1
        where event_at > '2024-02-01'::timestamptz and failed_payment_count_30d > 0""")
    assert failed >= 25
    again = _snapshot(home)
    assert again.content_hash == snapshot.content_hash  # ...but not the rows predicted before it
    assert again.snapshot_id == snapshot.snapshot_id and again.reused
