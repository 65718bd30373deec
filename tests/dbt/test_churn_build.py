"""The churn feature groups, label, inference spine and quarantine, built by `dbt build` on the small churn
dataset (fti_testing.CHURN_TEST_CONFIG in the session's churn home), checked against brute-force
recomputations from staging."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from fti_testing import CHURN_TEST_CONFIG, query

from examples.churn.generator import generate

UTC = dt.timezone.utc
RULE_OF_KIND = {"duplicate": "duplicate_key", "negative_minutes": "impossible_usage", "missing_customer": "null_key",
                "non_positive_amount": "impossible_amount", "unknown_severity": "unknown_severity"}


def test_dirty_rows_are_quarantined_with_their_rule_and_never_staged(churn_home):
    data = generate(CHURN_TEST_CONFIG)
    expected = Counter()
    for name, table in data.tables().items():
        for kind in table["dirty_kind"].to_pylist():
            if kind:
                expected[f"churn.{name}/{RULE_OF_KIND[kind]}"] += 1
    quarantined = dict(query(churn_home, """
        select source_table || '/' || rule_broken, count(*) from quarantine.quarantined_rows__churn group by all"""))
    assert quarantined == dict(expected)
    assert {rule.split("/")[1] for rule in quarantined} == set(RULE_OF_KIND.values())  # every rule has teeth
    staged = {name: query(churn_home, f"select count(*) from staging.stg_churn__{name}")[0][0]
              for name in data.tables()}
    clean = {name: table["dirty_kind"].to_pylist().count("") for name, table in data.tables().items()}
    assert staged == clean  # exactly the clean rows (a row corrupted in place is lost, not repaired)
    (negative,), = query(churn_home, "select count(*) from staging.stg_churn__usage where minutes_used < 0")
    assert negative == 0


def test_usage_windows_equal_a_brute_force_count_and_change_when_a_day_leaves_them(churn_home):
    wrong = query(churn_home, """
        with f as (select * from features.fg_customer__usage_v1),
             u as (select customer_id, day_end_at, sessions, minutes_used from staging.stg_churn__usage)
        select count(*) from f
        where session_count_7d <> (select coalesce(sum(sessions), 0) from u where u.customer_id = f.customer_id
                                   and u.day_end_at > f.event_at - interval 7 days and u.day_end_at <= f.event_at)
           or active_days_30d <> (select count(*) from u where u.customer_id = f.customer_id
                                  and u.day_end_at > f.event_at - interval 30 days and u.day_end_at <= f.event_at)
           or minutes_used_30d <> (select coalesce(sum(minutes_used), 0) from u where u.customer_id = f.customer_id
                                   and u.day_end_at > f.event_at - interval 30 days and u.day_end_at <= f.event_at)
           or last_used_at is distinct from (select max(day_end_at) from u where u.customer_id = f.customer_id
                                             and u.day_end_at <= f.event_at)""")
    assert wrong == [(0,)]
    # Rows at exits: the day a week of no use ends shows 0 sessions in 7 days (a stale entry row would not).
    (exits, clock_at), = query(churn_home, """
        select count(*) filter (where session_count_7d = 0 and session_count_30d > 0),
               (select max(day_end_at) from staging.stg_churn__landed_days)
        from features.fg_customer__usage_v1""")
    assert exits > 20
    (latest,), = query(churn_home, "select max(event_at) from features.fg_customer__usage_v1")
    assert latest <= clock_at  # no exit beyond the data landed


def test_billing_and_support_windows_equal_a_brute_force_count(churn_home):
    wrong = query(churn_home, """
        with f as (select * from features.fg_customer__billing_support_v1),
             p as (select customer_id, attempted_at, succeeded from staging.stg_churn__payments),
             t as (select customer_id, opened_at, severity_level from staging.stg_churn__tickets)
        select count(*) from f
        where failed_payment_count_30d <> (select count(*) filter (where not succeeded) from p
                                           where p.customer_id = f.customer_id
                                             and p.attempted_at > f.event_at - interval 30 days
                                             and p.attempted_at <= f.event_at)
           or payment_count_90d <> (select count(*) from p where p.customer_id = f.customer_id
                                    and p.attempted_at > f.event_at - interval 90 days and p.attempted_at <= f.event_at)
           or last_payment_failed is distinct from (
                  select not arg_max(succeeded, attempted_at) from p where p.customer_id = f.customer_id
                  and p.attempted_at > f.event_at - interval 90 days and p.attempted_at <= f.event_at)
           or ticket_count_90d <> (select count(*) from t where t.customer_id = f.customer_id
                                   and t.opened_at > f.event_at - interval 90 days and t.opened_at <= f.event_at)
           or max_ticket_severity_30d <> (select coalesce(max(severity_level), 0) from t
                                          where t.customer_id = f.customer_id
                                            and t.opened_at > f.event_at - interval 30 days
                                            and t.opened_at <= f.event_at)""")
    assert wrong == [(0,)]
    (failed,), = query(churn_home, "select count(*) from features.fg_customer__billing_support_v1 "
                                   "where failed_payment_count_30d > 0")
    assert failed > 10


def test_a_label_row_exists_only_once_its_outcome_is_known(churn_home):
    (clock_at,), = query(churn_home, "select max(day_end_at) from staging.stg_churn__landed_days")
    assert clock_at == dt.datetime(2024, 3, 11, tzinfo=UTC)
    months = query(churn_home, "select prediction_at, count(*), count(*) filter (where churned_30d) "
                               "from labels.label_customer__churn group by all order by 1")
    assert [m[0] for m in months] == [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 2, 1, tzinfo=UTC)]
    assert all(count > 200 and churned > 0 for _, count, churned in months)
    (unknown, wrong_target, wrong_known), = query(churn_home, """
        select count(*) filter (where label_known_at > (select max(day_end_at) from staging.stg_churn__landed_days)),
               count(*) filter (where churned_30d <> coalesce(c.cancelled_at < l.prediction_at + interval 30 days, false)),
               count(*) filter (where label_known_at <> prediction_at + interval 30 days)
        from labels.label_customer__churn l left join staging.stg_churn__cancellations c using (customer_id)""")
    assert (unknown, wrong_target, wrong_known) == (0, 0, 0)


def test_the_spine_has_this_months_active_customers_while_the_label_does_not(churn_home):
    active = """
        select c.customer_id from staging.stg_churn__customers c
        left join staging.stg_churn__cancellations x using (customer_id)
        where c.signup_at < timestamptz '{m}' and (x.cancelled_at is null or x.cancelled_at >= timestamptz '{m}')"""
    spine = "select customer_id from spines.spine_customer__active where prediction_at = timestamptz '{m}'"
    label = "select customer_id from labels.label_customer__churn where prediction_at = timestamptz '{m}'"
    march = "2024-03-01 00:00:00+00"
    expected = {r[0] for r in query(churn_home, active.format(m=march))}
    assert len(expected) > 200
    assert {r[0] for r in query(churn_home, spine.format(m=march))} == expected
    assert query(churn_home, label.format(m=march)) == []
    # For months with known outcomes, spine and label list the same customers with the same columns.
    columns = "customer_id, prediction_at, plan, country, tenure_days"
    only_one = query(churn_home, f"""
        select count(*) from ((select {columns} from spines.spine_customer__active where prediction_at < '{march}'
                               except all select {columns} from labels.label_customer__churn)
                              union all
                              (select {columns} from labels.label_customer__churn
                               except all select {columns} from spines.spine_customer__active))""")
    assert only_one == [(0,)]
    (wrong_tenure,), = query(churn_home, """
        select count(*) from spines.spine_customer__active s join staging.stg_churn__customers c using (customer_id)
        where s.tenure_days <> floor(epoch(s.prediction_at - c.signup_at) / 86400)""")
    assert wrong_tenure == 0
