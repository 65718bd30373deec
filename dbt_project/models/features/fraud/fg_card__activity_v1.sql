-- Trailing activity of each card, one row per card per moment it transacted, INCLUDING that transaction.
--
-- Event-time semantics (what makes offline training and online serving agree): the row at event_at = t
-- describes the card right after its transaction at t. The online store keeps each card's latest row, i.e.
-- the state before the next request; offline, the label's spine time is the transaction time minus one
-- microsecond, so the point-in-time join (event_at <= spine time) takes the same row: the one of the
-- card's previous transaction, never the transaction being scored. Windows are half-open and end at the
-- row's event time: (t - N, t]. So `transaction_count_10m` seen by a request is the count in the 10
-- minutes up to and including the card's previous transaction (and `seconds_since_previous`, an on-demand
-- feature, says how long ago that was). The `last_*` columns are that previous transaction itself.
--
-- Sums are over integer cents (exact in any order), so incremental runs equal a full refresh bit for bit;
-- see macros/windowed_incremental.sql and macros/trailing_aggregates.sql (how the windows are computed).
{#- The windows, declared once: trailing_aggregates computes them, and the scope folds by their lengths. #}
{%- set activity = [
    ['transaction_count_10m', 'sum', 'transaction_count', '10 minutes'],
    ['amount_cents_10m', 'sum', 'amount_cents', '10 minutes'],
    ['transaction_count_1h', 'sum', 'transaction_count', '1 hour'],
    ['amount_cents_1h', 'sum', 'amount_cents', '1 hour'],
    ['transaction_count_1d', 'sum', 'transaction_count', '24 hours'],
    ['amount_cents_1d', 'sum', 'amount_cents', '24 hours'],
    ['transaction_count_7d', 'sum', 'transaction_count', '168 hours'],
    ['amount_cents_7d', 'sum', 'amount_cents', '168 hours'],
    ['transaction_count_30d', 'sum', 'transaction_count', '720 hours'],
    ['amount_cents_30d', 'sum', 'amount_cents', '720 hours'],
    ['amount_cents_max_30d', 'max', 'amount_cents_max', '720 hours'],
    ['loaded_at', 'max', 'loaded_at', '720 hours'],
] %}
with

{#- The view itself, not a CTE over it: the scope reads its input four times, and DuckDB materializes a CTE
    read more than once whole (2M rows) before filtering; the view's reads each filter as they scan. #}
{{ windowed_incremental_scope(ref('stg_fraud__transactions'), 'transaction_at', '720 hours',
                              windows=window_lengths(activity), partition_by=['card_id']) }}

per_moment as (
    select
        card_id,
        transaction_at as event_at,
        count(*) as transaction_count,
        sum(amount_cents) as amount_cents,
        max(amount_cents) as amount_cents_max,
        arg_max(amount, transaction_id) as last_amount,
        arg_max(latitude, transaction_id) as last_latitude,
        arg_max(longitude, transaction_id) as last_longitude,
        max(loaded_at) as loaded_at
    from in_scope
    group by all
),

windowed as (
    {{ trailing_aggregates('per_moment', ['card_id'], 'event_at', activity,
                           carry=['last_amount', 'last_latitude', 'last_longitude']) }}
),

final as (
    select
        card_id,
        event_at::timestamptz as event_at,
        transaction_count_10m::integer as transaction_count_10m,
        (amount_cents_10m / 100)::double as amount_sum_10m,
        transaction_count_1h::integer as transaction_count_1h,
        (amount_cents_1h / 100)::double as amount_sum_1h,
        transaction_count_1d::integer as transaction_count_1d,
        (amount_cents_1d / 100)::double as amount_sum_1d,
        transaction_count_7d::integer as transaction_count_7d,
        (amount_cents_7d / 100)::double as amount_sum_7d,
        transaction_count_30d::integer as transaction_count_30d,
        (amount_cents_30d / transaction_count_30d / 100)::double as amount_mean_30d,
        (amount_cents_max_30d / 100)::double as amount_max_30d,
        event_at::timestamptz as last_transaction_at,
        last_amount::double as last_amount,
        last_latitude::double as last_latitude,
        last_longitude::double as last_longitude,
        loaded_at::timestamptz as loaded_at
    from windowed
    {{ in_recompute_range('event_at') }}
)

select * from final
