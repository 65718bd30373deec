"""The churn generator: deterministic for a seed, UTC times, dirty rows of every kind, and churn that the
data foreshadows (usage fades before a cancellation, failed payments end subscriptions)."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from examples.churn.generator import DIRTY_KINDS, PAYMENT_FAILED, PLAN_NAMES, ChurnConfig, generate

CONFIG = ChurnConfig(seed=5, days=120, n_initial_customers=800, n_new_customers=600, dirty_row_share=0.002)
UTC = dt.timezone.utc
TIME_COLUMNS = {"customers": "signup_at", "tickets": "opened_at", "payments": "attempted_at",
                "cancellations": "cancelled_at"}
KEYS = {"customers": ["customer_id"], "usage": ["customer_id", "usage_date"], "tickets": ["ticket_id"],
        "payments": ["payment_id"], "cancellations": ["customer_id"]}


@pytest.fixture(scope="module")
def data():
    return generate(CONFIG)


def _clean(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table["dirty_kind"], ""))


def _micros(table: pa.Table, column: str) -> np.ndarray:
    return pc.cast(table[column], pa.int64()).to_numpy()


def test_same_seed_same_tables_other_seed_other_tables(data):
    again = generate(CONFIG)
    for name, table in data.tables().items():
        assert again.tables()[name].equals(table), name
    other = generate(ChurnConfig(**{**CONFIG.as_dict(), "seed": 6}))
    assert not other.usage.equals(data.usage)
    assert CONFIG.fingerprint() == ChurnConfig.from_dict(CONFIG.as_dict()).fingerprint()
    assert CONFIG.fingerprint() != other.config.fingerprint()


def test_times_are_utc_inside_the_period_and_never_exactly_midnight(data):
    start, end = (int(m.timestamp() * 1_000_000) for m in (CONFIG.start_at, CONFIG.end_at))
    for name, column in TIME_COLUMNS.items():
        table = data.tables()[name]
        assert table.schema.field(column).type == pa.timestamp("us", tz="UTC"), name
        times = _micros(table, column)
        assert (np.diff(times) >= 0).all(), name  # sorted by the time the loader batches by
        assert times.max() < end and times.min() >= (start if name != "customers" else start - 731 * 86_400_000_000)
        assert (times % 86_400_000_000 != 0).all(), name  # midnight is when a day's usage becomes known
    assert data.usage.schema.field("usage_date").type == pa.date32()
    days = pc.cast(data.usage["usage_date"], pa.int32()).to_numpy()
    first = (CONFIG.start - dt.date(1970, 1, 1)).days
    assert days.min() == first and days.max() == first + CONFIG.days - 1
    signups = _micros(data.customers, "signup_at")
    assert (signups < start).sum() >= CONFIG.n_initial_customers  # plus re-sent copies


def test_every_table_has_its_dirty_kinds_and_clean_rows_have_unique_keys(data):
    for name, table in data.tables().items():
        kinds = set(table["dirty_kind"].to_pylist()) - {""}
        assert kinds == set(DIRTY_KINDS[name]), name
        clean = _clean(table)
        keys = clean.group_by(KEYS[name]).aggregate([([], "count_all")])
        assert keys.num_rows == clean.num_rows, name
    usage = data.usage.filter(pc.equal(data.usage["dirty_kind"], "negative_minutes"))
    assert pc.all(pc.less(usage["minutes_used"], 0)).as_py()
    payments = data.payments.filter(pc.equal(data.payments["dirty_kind"], "non_positive_amount"))
    assert pc.all(pc.less_equal(payments["amount"], 0)).as_py()
    missing = data.tickets.filter(pc.equal(data.tickets["dirty_kind"], "missing_customer"))
    assert missing["customer_id"].null_count == missing.num_rows > 0
    clean_usage = _clean(data.usage)
    assert pc.min(clean_usage["sessions"]).as_py() >= 1
    assert pc.max(clean_usage["minutes_used"]).as_py() <= 1440
    assert set(_clean(data.customers)["plan"].to_pylist()) == set(PLAN_NAMES)


def test_customers_churn_at_a_plausible_rate_and_stop_everything_when_they_cancel(data):
    cancellations = _clean(data.cancellations)
    share = cancellations.num_rows / CONFIG.customers
    assert 0.08 < share < 0.35  # about 5% a month over four months
    reasons = set(cancellations["reason"].to_pylist())
    assert PAYMENT_FAILED in reasons and len(reasons) >= 4
    cancelled_at = dict(zip(cancellations["customer_id"].to_pylist(), _micros(cancellations, "cancelled_at")))
    for name, column in [("payments", "attempted_at"), ("tickets", "opened_at")]:
        table = _clean(data.tables()[name])
        after = [c for c, at in zip(table["customer_id"].to_pylist(), _micros(table, column))
                 if c in cancelled_at and at >= cancelled_at[c]]
        assert after == [], name
    usage = _clean(data.usage)
    day_start = pc.cast(usage["usage_date"], pa.int32()).to_numpy().astype(np.int64) * 86_400_000_000
    late = [c for c, day in zip(usage["customer_id"].to_pylist(), day_start)
            if c in cancelled_at and day + 86_400_000_000 > cancelled_at[c]]
    assert late == []  # no usage on or after the day of cancellation


def test_usage_fades_before_voluntary_cancellations_and_failed_payments_precede_involuntary_ones(data):
    usage = _clean(data.usage)
    customer = usage["customer_id"].to_numpy(zero_copy_only=False)
    day = pc.cast(usage["usage_date"], pa.int32()).to_numpy()
    sessions = usage["sessions"].to_numpy()
    cancellations = _clean(data.cancellations)
    last_two_weeks, two_weeks_before = [], []
    for who, at, reason in zip(cancellations["customer_id"].to_pylist(), _micros(cancellations, "cancelled_at"),
                               cancellations["reason"].to_pylist()):
        cancel_day = at // 86_400_000_000
        if reason == PAYMENT_FAILED or cancel_day - 42 < (CONFIG.start - dt.date(1970, 1, 1)).days:
            continue
        mine = customer == who
        last_two_weeks.append(sessions[mine & (day >= cancel_day - 14) & (day < cancel_day)].sum())
        two_weeks_before.append(sessions[mine & (day >= cancel_day - 42) & (day < cancel_day - 28)].sum())
    assert len(last_two_weeks) > 30
    assert np.mean(last_two_weeks) < 0.6 * np.mean(two_weeks_before)  # fading, on average...
    assert np.mean(np.array(last_two_weeks) >= np.array(two_weeks_before)) > 0.03  # ...not always

    payments = _clean(data.payments)
    failed = payments.filter(pc.invert(payments["succeeded"]))
    involuntary = cancellations.filter(pc.equal(cancellations["reason"], PAYMENT_FAILED))
    failures = dict(zip(*np.unique(failed["customer_id"].to_numpy(zero_copy_only=False), return_counts=True)))
    assert all(failures.get(who, 0) >= 3 for who in involuntary["customer_id"].to_pylist())


def test_the_default_year_generates_in_a_few_seconds():
    started = time.perf_counter()
    data = generate(ChurnConfig())
    assert time.perf_counter() - started < 15
    assert data.customers.num_rows >= ChurnConfig().customers
    assert data.usage.num_rows > 500_000
