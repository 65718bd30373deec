-- Trailing product usage of each customer, one row per customer per moment its trailing windows change:
-- its signup (all zero: a new customer's usage is known to be none, not unknown), the end of each UTC day
-- it used the product (a day's usage is known once the day is over), and the moments such a day leaves the
-- 7-day and the 30-day window (macros/window_exits.sql). So the row at or before any time t, the one the
-- point-in-time join takes, holds the counts over (t - 7 days, t] and (t - 30 days, t] exactly, also for a
-- customer who stopped using the product weeks ago.
--
-- `last_used_at` is the end of the customer's last day with sessions, however long ago (the
-- customer_churn view turns it into days since last use at the prediction time, on demand). Counts are
-- integers and exact in any order, so incremental runs equal a full refresh (macros/windowed_incremental.sql;
-- an exit counts as new once the data clock passes it).
with

usage as (
    select * from {{ ref('stg_churn__usage') }}
),

customers as (
    select * from {{ ref('stg_churn__customers') }}
),

clock as (
    select * from {{ ref('stg_churn__landed_days') }}
),

used as (
    select
        customer_id,
        day_end_at as event_at,
        sessions,
        minutes_used,
        loaded_at
    from usage
    where sessions > 0
),

events as (
    select
        customer_id,
        event_at,
        sessions,
        minutes_used,
        1 as active_days,
        event_at as used_at,
        loaded_at
    from used
    union all
    select
        customer_id,
        signup_at as event_at,
        0 as sessions,
        0 as minutes_used,
        0 as active_days,
        null::timestamptz as used_at,
        loaded_at
    from customers
    union all
    select
        customer_id,
        event_at,
        0 as sessions,
        0 as minutes_used,
        0 as active_days,
        null::timestamptz as used_at,
        loaded_at
    from ({{ window_exits('used', ['customer_id'], ['168 hours', '720 hours'], 'clock') }})
),

{{ windowed_incremental_scope('events', 'event_at', '720 hours') }}

{% if is_incremental() %}
-- The last use before the scope's rows, for customers whose last use is older than the widest window.
used_before_scope as (
    select
        customer_id,
        max(event_at) as used_at
    from used
    where event_at < (select recompute_from_at from recompute_from) - interval '720 hours'
    group by all
),
{% endif %}

per_moment as (
    select
        customer_id,
        event_at,
        sum(sessions) as sessions,
        sum(minutes_used) as minutes_used,
        sum(active_days) as active_days,
        max(used_at) as used_at,
        max(loaded_at) as loaded_at
    from in_scope
    group by all
),

windowed as (
    select
        customer_id,
        event_at,
        sum(sessions) over w7d as session_count_7d,
        sum(minutes_used) over w7d as minutes_used_7d,
        sum(active_days) over w7d as active_days_7d,
        sum(sessions) over w30d as session_count_30d,
        sum(minutes_used) over w30d as minutes_used_30d,
        sum(active_days) over w30d as active_days_30d,
        max(used_at) over (partition by customer_id order by event_at
                           rows between unbounded preceding and current row) as last_used_in_scope_at,
        max(loaded_at) over w30d as loaded_at
    from per_moment
    window
        w7d as {{ trailing_window('customer_id', '168 hours') }},
        w30d as {{ trailing_window('customer_id', '720 hours') }}
),

final as (
    select
        windowed.customer_id,
        windowed.event_at::timestamptz as event_at,
        session_count_7d::integer as session_count_7d,
        minutes_used_7d::integer as minutes_used_7d,
        active_days_7d::integer as active_days_7d,
        session_count_30d::integer as session_count_30d,
        minutes_used_30d::integer as minutes_used_30d,
        active_days_30d::integer as active_days_30d,
        (session_count_7d * 30 / nullif(session_count_30d * 7, 0))::double as session_trend_7d_30d,
        {% if is_incremental() -%}
        coalesce(last_used_in_scope_at, used_before_scope.used_at)::timestamptz as last_used_at,
        {%- else -%}
        last_used_in_scope_at::timestamptz as last_used_at,
        {%- endif %}
        windowed.loaded_at::timestamptz as loaded_at
    from windowed
    {% if is_incremental() -%}
    left join used_before_scope on used_before_scope.customer_id = windowed.customer_id
    {%- endif %}
    {{ in_recompute_range('windowed.event_at') }}
)

select * from final
