"""The fraud generator: deterministic for a seed, UTC times, and fraud that looks like fraud."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from examples.fraud.generator import FRAUD_PATTERNS, FraudConfig, generate, haversine_km

CONFIG = FraudConfig(seed=5, n_transactions=60_000, days=40, compromised_card_share=0.05,
                     compromised_merchant_share=0.02, dirty_row_share=0.002)


@pytest.fixture(scope="module")
def data():
    return generate(CONFIG)


@pytest.fixture(scope="module")
def clean(data):
    """Transactions without the dirty copies, as numpy columns sorted by card then time."""
    t = data.transactions.filter(pc.equal(data.transactions["dirty_kind"], ""))
    t = t.sort_by([("card_id", "ascending"), ("transaction_at", "ascending")])
    return {name: t[name].to_numpy(zero_copy_only=False) for name in t.column_names} | {
        "at": pc.cast(t["transaction_at"], pa.int64()).to_numpy()}


def test_same_seed_same_tables_other_seed_other_tables(data):
    again = generate(CONFIG)
    for name in ("cards", "merchants", "transactions", "chargebacks"):
        assert getattr(again, name).equals(getattr(data, name)), name
    other = generate(FraudConfig(**{**CONFIG.as_dict(), "seed": 6}))
    assert not other.transactions.equals(data.transactions)


def test_sizes_times_and_ids(data):
    t = data.transactions
    assert CONFIG.n_transactions <= t.num_rows < CONFIG.n_transactions * 1.10
    assert data.cards.num_rows == CONFIG.cards and data.merchants.num_rows == CONFIG.merchants
    for table, column in [(t, "transaction_at"), (data.chargebacks, "reported_at"), (data.cards, "issued_at")]:
        assert table.schema.field(column).type == pa.timestamp("us", tz="UTC")
    times = pc.cast(t["transaction_at"], pa.int64()).to_numpy()
    assert (np.diff(times) >= 0).all()  # sorted by time
    start = (CONFIG.start_at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    assert times.min() >= start and times.max() < start + CONFIG.days * 86_400_000_000
    clean = t.filter(pc.equal(t["dirty_kind"], ""))
    assert pc.count_distinct(clean["transaction_id"]).as_py() == clean.num_rows


def test_no_card_has_two_transactions_in_the_same_microsecond(clean):
    same_card = clean["card_id"][1:] == clean["card_id"][:-1]
    assert (np.diff(clean["at"])[same_card] > 0).all()


def test_every_fraud_pattern_is_present_at_a_plausible_rate(data):
    counts = dict(zip(*np.unique(data.transactions["fraud_pattern"].to_numpy(zero_copy_only=False), return_counts=True)))
    assert set(counts) == set(FRAUD_PATTERNS)
    fraud = sum(n for p, n in counts.items() if p)
    assert 0.002 < fraud / data.transactions.num_rows < 0.03


def _previous(clean, mask):
    """For the rows in mask: the time, place of the same card's previous transaction (NaN when first)."""
    index = np.flatnonzero(mask)
    has_previous = (index > 0) & (clean["card_id"][np.maximum(index - 1, 0)] == clean["card_id"][index])
    previous = np.maximum(index - 1, 0)
    return index[has_previous], previous[has_previous]


def test_card_testing_is_bursts_of_tiny_payments_minutes_apart(clean):
    index, previous = _previous(clean, clean["fraud_pattern"] == "card_testing")
    assert (clean["amount"][clean["fraud_pattern"] == "card_testing"] <= 5.0).all()
    within_burst = clean["fraud_pattern"][previous] == "card_testing"
    gaps = (clean["at"][index] - clean["at"][previous])[within_burst] / 1e6
    assert within_burst.mean() > 0.6 and np.median(gaps) < 180


def test_impossible_travel_is_far_from_the_previous_purchase_minutes_later(clean):
    index, previous = _previous(clean, clean["fraud_pattern"] == "impossible_travel")
    first = clean["fraud_pattern"][previous] != "impossible_travel"
    km = haversine_km(clean["latitude"][index], clean["longitude"][index],
                      clean["latitude"][previous], clean["longitude"][previous])[first]
    minutes = ((clean["at"][index] - clean["at"][previous]) / 60e6)[first]
    assert np.median(km) > 800 and np.median(minutes) < 60
    genuine_index, genuine_previous = _previous(clean, clean["fraud_pattern"] == "")
    genuine_speed = haversine_km(clean["latitude"][genuine_index], clean["longitude"][genuine_index],
                                 clean["latitude"][genuine_previous], clean["longitude"][genuine_previous]) / \
        np.maximum((clean["at"][genuine_index] - clean["at"][genuine_previous]) / 3.6e9, 1 / 3600)
    fraud_speed = km / np.maximum(minutes / 60, 1 / 3600)
    assert np.median(fraud_speed) > 100 * np.median(genuine_speed)


def test_high_amounts_are_far_above_the_cards_habit(clean):
    genuine = clean["fraud_pattern"] == ""
    cards, inverse = np.unique(clean["card_id"], return_inverse=True)
    median = np.array([np.median(clean["amount"][genuine & (inverse == i)]) if (genuine & (inverse == i)).any()
                       else np.nan for i in range(len(cards))])
    high = clean["fraud_pattern"] == "high_amount"
    ratio = clean["amount"][high] / median[inverse[high]]
    assert np.nanmedian(ratio) > 5


def test_compromised_merchants_have_a_high_fraud_share(clean):
    fraud_merchants = np.unique(clean["merchant_id"][clean["fraud_pattern"] == "compromised_merchant"])
    at_them = np.isin(clean["merchant_id"], fraud_merchants)
    assert 0 < len(fraud_merchants) <= max(2, CONFIG.merchants // 20)
    assert clean["is_fraud"][at_them].mean() > 10 * clean["is_fraud"][~at_them].mean()


def test_chargebacks_are_fraud_reported_late_within_the_maturity(data):
    t = data.transactions.filter(pc.equal(data.transactions["dirty_kind"], ""))
    fraud_ids = set(t.filter(t["is_fraud"])["transaction_id"].to_pylist())
    chargebacks = data.chargebacks
    reported = chargebacks["transaction_id"].to_pylist()
    assert set(reported) <= fraud_ids and len(set(reported)) == len(reported)
    assert 0.85 < len(reported) / len(fraud_ids) < 1.0  # some fraud is never reported
    at = dict(zip(t["transaction_id"].to_pylist(), t["transaction_at"].to_pylist()))
    delays = [(r - at[i]).total_seconds() / 86_400 for i, r in zip(reported, chargebacks["reported_at"].to_pylist())]
    assert min(delays) >= 0.5 and max(delays) < CONFIG.label_maturity_days
    assert 2 < float(np.median(delays)) < 14


def test_dirty_rows_are_few_and_of_every_kind(data):
    kinds = data.transactions["dirty_kind"].to_numpy(zero_copy_only=False)
    dirty = kinds != ""
    assert 0 < dirty.mean() < 0.01
    assert set(kinds[dirty]) == {"duplicate", "non_positive_amount", "impossible_coordinates", "missing_card"}
