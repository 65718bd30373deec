-- Trailing activity and chargeback rate of each merchant, one row per merchant per moment something
-- happened there: a transaction (at its transaction time) or a chargeback on one of its transactions (at
-- the time the chargeback was REPORTED). A row includes the events at its own event time; the label's spine
-- time is the transaction time minus one microsecond, so a request sees the merchant as of just before it
-- (the same semantics as fg_card__activity).
--
-- No leakage from labels: a chargeback counts from the moment it was reported, never from its transaction
-- time, so a row only knows the fraud that had been reported by then. `chargeback_rate_30d` is the card
-- networks' chargeback ratio: chargebacks reported in (t - 30 days, t] over transactions in (t - 30 days, t].
-- A chargeback reported before its own transaction (impossible; bad data) is ignored.
{#- The windows, declared once: trailing_aggregates computes them, and the scope folds by their lengths. #}
{%- set activity = [
    ['transaction_count_1h', 'sum', 'transaction_count', '1 hour'],
    ['transaction_count_1d', 'sum', 'transaction_count', '24 hours'],
    ['transaction_count_7d', 'sum', 'transaction_count', '168 hours'],
    ['amount_cents_7d', 'sum', 'amount_cents', '168 hours'],
    ['transaction_count_30d', 'sum', 'transaction_count', '720 hours'],
    ['chargeback_count_30d', 'sum', 'chargeback_count', '720 hours'],
    ['loaded_at', 'max', 'loaded_at', '720 hours'],
] %}
with

chargebacks as (
    select * from {{ ref('stg_fraud__chargebacks') }}
),

-- A chargeback as an event at its transaction's merchant: few rows, joined once.
chargeback_events as (
    select
        transactions.merchant_id,
        chargebacks.reported_at as event_at,
        0 as transaction_count,
        0 as amount_cents,
        1 as chargeback_count,
        greatest(chargebacks.loaded_at, transactions.loaded_at) as loaded_at
    from chargebacks
    inner join {{ ref('stg_fraud__transactions') }} as transactions
        on transactions.transaction_id = chargebacks.transaction_id
    where chargebacks.is_fraud
      and chargebacks.reported_at >= transactions.transaction_at
),

-- The scope reads the events three times: inlined, each read's time or load-time bounds reach the
-- transactions' scan (a day's run reads the month its windows need, not every transaction ever landed).
events as {{ cte_inlined() }} (
    select
        merchant_id,
        transaction_at as event_at,
        1 as transaction_count,
        amount_cents,
        0 as chargeback_count,
        loaded_at
    from {{ ref('stg_fraud__transactions') }}
    union all
    select * from chargeback_events
),

{{ windowed_incremental_scope('events', 'event_at', '720 hours', windows=window_lengths(activity)) }}

per_moment as (
    select
        merchant_id,
        event_at,
        sum(transaction_count) as transaction_count,
        sum(amount_cents) as amount_cents,
        sum(chargeback_count) as chargeback_count,
        max(loaded_at) as loaded_at
    from in_scope
    group by all
),

windowed as (
    {{ trailing_aggregates('per_moment', ['merchant_id'], 'event_at', activity) }}
),

final as (
    select
        merchant_id,
        event_at::timestamptz as event_at,
        transaction_count_1h::integer as transaction_count_1h,
        transaction_count_1d::integer as transaction_count_1d,
        transaction_count_7d::integer as transaction_count_7d,
        (amount_cents_7d / nullif(transaction_count_7d, 0) / 100)::double as amount_mean_7d,
        transaction_count_30d::integer as transaction_count_30d,
        chargeback_count_30d::integer as chargeback_count_30d,
        (chargeback_count_30d / nullif(transaction_count_30d, 0))::double as chargeback_rate_30d,
        loaded_at::timestamptz as loaded_at
    from windowed
    {{ in_recompute_range('event_at') }}
)

select * from final
