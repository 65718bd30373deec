-- Trailing payment failures and support tickets of each customer, one row per customer per moment its
-- windows change: its signup (all zero), a payment attempt (at its attempt time), a ticket (at its opening
-- time), and the moments each of them leaves the 30-day and the 90-day window (macros/window_exits.sql). So the row at or before
-- any time t holds the counts over (t - 30 days, t] and (t - 90 days, t] exactly, also months after the
-- customer's last payment trouble. `last_payment_failed` is whether the latest attempt in the 90 days
-- failed (null without one).
--
-- Counts are integers, exact in any order, so incremental runs equal a full refresh
-- (macros/windowed_incremental.sql; an exit counts as new once the data clock passes it).
with

payments as (
    select * from {{ ref('stg_churn__payments') }}
),

tickets as (
    select * from {{ ref('stg_churn__tickets') }}
),

customers as (
    select * from {{ ref('stg_churn__customers') }}
),

clock as (
    select * from {{ ref('stg_churn__landed_days') }}
),

happened as (
    select
        customer_id,
        attempted_at as event_at,
        1 as payment_count,
        (not succeeded)::integer as failed_payment_count,
        0 as ticket_count,
        0 as high_severity_ticket_count,
        0 as severity_level,
        not succeeded as payment_failed,
        loaded_at
    from payments
    union all
    select
        customer_id,
        opened_at as event_at,
        0 as payment_count,
        0 as failed_payment_count,
        1 as ticket_count,
        (severity_level >= 3)::integer as high_severity_ticket_count,
        severity_level,
        null::boolean as payment_failed,
        loaded_at
    from tickets
),

events as (
    select * from happened
    union all
    select
        customer_id,
        signup_at as event_at,
        0 as payment_count,
        0 as failed_payment_count,
        0 as ticket_count,
        0 as high_severity_ticket_count,
        0 as severity_level,
        null::boolean as payment_failed,
        loaded_at
    from customers
    union all
    select
        customer_id,
        event_at,
        0 as payment_count,
        0 as failed_payment_count,
        0 as ticket_count,
        0 as high_severity_ticket_count,
        0 as severity_level,
        null::boolean as payment_failed,
        loaded_at
    from ({{ window_exits('happened', ['customer_id'], ['720 hours', '2160 hours'], 'clock') }})
),

{{ windowed_incremental_scope('events', 'event_at', '2160 hours') }}

per_moment as (
    select
        customer_id,
        event_at,
        sum(payment_count) as payment_count,
        sum(failed_payment_count) as failed_payment_count,
        sum(ticket_count) as ticket_count,
        sum(high_severity_ticket_count) as high_severity_ticket_count,
        max(severity_level) as severity_level,
        bool_or(payment_failed) as payment_failed,
        max(loaded_at) as loaded_at
    from in_scope
    group by all
),

windowed as (
    select
        customer_id,
        event_at,
        sum(payment_count) over w30d as payment_count_30d,
        sum(failed_payment_count) over w30d as failed_payment_count_30d,
        sum(payment_count) over w90d as payment_count_90d,
        sum(failed_payment_count) over w90d as failed_payment_count_90d,
        arg_max(payment_failed, event_at) filter (where payment_failed is not null) over w90d
            as last_payment_failed,
        sum(ticket_count) over w30d as ticket_count_30d,
        max(severity_level) over w30d as max_ticket_severity_30d,
        sum(ticket_count) over w90d as ticket_count_90d,
        sum(high_severity_ticket_count) over w90d as high_severity_ticket_count_90d,
        max(loaded_at) over w90d as loaded_at
    from per_moment
    window
        w30d as {{ trailing_window('customer_id', '720 hours') }},
        w90d as {{ trailing_window('customer_id', '2160 hours') }}
),

final as (
    select
        customer_id,
        event_at::timestamptz as event_at,
        payment_count_30d::integer as payment_count_30d,
        failed_payment_count_30d::integer as failed_payment_count_30d,
        payment_count_90d::integer as payment_count_90d,
        failed_payment_count_90d::integer as failed_payment_count_90d,
        last_payment_failed::boolean as last_payment_failed,
        ticket_count_30d::integer as ticket_count_30d,
        max_ticket_severity_30d::integer as max_ticket_severity_30d,
        ticket_count_90d::integer as ticket_count_90d,
        high_severity_ticket_count_90d::integer as high_severity_ticket_count_90d,
        loaded_at::timestamptz as loaded_at
    from windowed
    {{ in_recompute_range('event_at') }}
)

select * from final
