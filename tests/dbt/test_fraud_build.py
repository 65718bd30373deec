"""The fraud feature groups, label and quarantine, built by `dbt build` on the tiny fraud dataset
(fti_testing.FRAUD_CONFIG in the session's built home), checked against brute-force recomputations."""

from __future__ import annotations

import pyarrow.compute as pc
from fti_testing import FRAUD_CONFIG, query

from examples.fraud.generator import generate


def test_card_windows_equal_a_brute_force_count_over_half_open_windows(built_home):
    wrong = query(built_home, """
        with f as (select * from features.fg_card__activity_v1),
             t as (select card_id, transaction_at, amount_cents from staging.stg_fraud__transactions)
        select count(*) from f
        where transaction_count_10m <> (select count(*) from t where t.card_id = f.card_id
                                        and t.transaction_at > f.event_at - interval 10 minutes
                                        and t.transaction_at <= f.event_at)
           or amount_sum_1d <> (select sum(amount_cents) / 100 from t where t.card_id = f.card_id
                                and t.transaction_at > f.event_at - interval 24 hours
                                and t.transaction_at <= f.event_at)
           or transaction_count_30d <> (select count(*) from t where t.card_id = f.card_id
                                        and t.transaction_at > f.event_at - interval 720 hours
                                        and t.transaction_at <= f.event_at)""")
    assert wrong == [(0,)]
    (rows, cards), = query(built_home, "select count(*), count(distinct card_id) from features.fg_card__activity_v1")
    (transactions,), = query(built_home, "select count(*) from staging.stg_fraud__transactions")
    assert rows == transactions and cards > 100  # one row per card transaction (no two in a microsecond)


def test_merchant_chargeback_rate_uses_only_chargebacks_reported_by_the_event_time(built_home):
    """Each row's chargeback count is exactly the chargebacks REPORTED in (t - 30 days, t]: a chargeback
    never counts before it was reported, however early its transaction was."""
    wrong = query(built_home, """
        with f as (select * from features.fg_merchant__activity_v1),
             reported as (select t.merchant_id, c.reported_at
                          from staging.stg_fraud__chargebacks c
                          join staging.stg_fraud__transactions t using (transaction_id))
        select count(*) from f
        where chargeback_count_30d <> (select count(*) from reported r where r.merchant_id = f.merchant_id
                                       and r.reported_at > f.event_at - interval 720 hours
                                       and r.reported_at <= f.event_at)""")
    assert wrong == [(0,)]
    # The test has teeth: counting fraud by transaction time (what leaks) would differ on many rows.
    (leaky,), = query(built_home, """
        with f as (select * from features.fg_merchant__activity_v1),
             fraud as (select t.merchant_id, t.transaction_at from staging.stg_fraud__chargebacks c
                       join staging.stg_fraud__transactions t using (transaction_id))
        select count(*) from f
        where chargeback_count_30d <> (select count(*) from fraud x where x.merchant_id = f.merchant_id
                                       and x.transaction_at > f.event_at - interval 720 hours
                                       and x.transaction_at <= f.event_at)""")
    assert leaky > 100
    (top_rate,), = query(built_home, "select max(chargeback_rate_30d) from features.fg_merchant__activity_v1")
    assert top_rate > 0.05  # the compromised merchant shows up


def test_labels_are_final_only_after_the_maturity_window(built_home):
    (immature, wrong_target, wrong_spine, labelled, fraud), = query(built_home, """
        with labels as (select * from labels.label_transaction__fraud),
             clock as (select max(transaction_at) as clock_at from staging.stg_fraud__transactions),
             reported as (select transaction_id, reported_at from staging.stg_fraud__chargebacks)
        select
            count(*) filter (where labels.label_matures_at > clock.clock_at),
            count(*) filter (where labels.is_fraud <> coalesce(reported.reported_at <= labels.label_matures_at, false)),
            count(*) filter (where labels.prediction_at <> labels.transaction_at - interval 1 microsecond),
            count(*),
            count(*) filter (where labels.is_fraud)
        from labels cross join clock left join reported using (transaction_id)""")
    assert (immature, wrong_target, wrong_spine) == (0, 0, 0)
    assert labelled > 5_000 and fraud > 10
    (missing,), = query(built_home, """
        select count(*) from staging.stg_fraud__transactions t
        where t.transaction_at + interval 720 hours <= (select max(transaction_at) from staging.stg_fraud__transactions)
          and t.transaction_id not in (select transaction_id from labels.label_transaction__fraud)""")
    assert missing == 0  # every mature transaction has its label


def test_dirty_transactions_are_quarantined_with_their_rule_and_never_staged(built_home):
    data = generate(FRAUD_CONFIG)
    dirty = data.transactions.filter(pc.not_equal(data.transactions["dirty_kind"], "")).to_pylist()
    landed_through = FRAUD_CONFIG.end_at
    expected = {"duplicate": "duplicate_key", "non_positive_amount": "impossible_amount",
                "impossible_coordinates": "impossible_coordinates", "missing_card": "null_key"}
    quarantined = dict(query(built_home, """
        select record->>'transaction_id' || '/' || rule_broken, count(*) from quarantine.quarantined_rows__fraud
        where source_table = 'fraud.transactions' group by all"""))
    for row in dirty:
        if row["transaction_at"] < landed_through:
            assert quarantined.get(f"{row['transaction_id']}/{expected[row['dirty_kind']]}") == 1, row
    assert sum(quarantined.values()) == len(dirty)
    staged = {r[0] for r in query(built_home, "select transaction_id from staging.stg_fraud__transactions")}
    corrupted = {r["transaction_id"] for r in dirty if r["dirty_kind"] != "duplicate"}
    assert not staged & corrupted
