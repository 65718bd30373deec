-- The churn inference spine: one row per customer active at each month start (00:00 UTC), available as
-- soon as the data reaches that month start (the day before it has landed), long before the outcome. The
-- same customers and columns as label_customer__churn (macros/churn.sql), without the target: batch
-- inference scores these rows; the label's row for the same customer and month arrives 30 days later.
with

customers as (
    select * from {{ ref('stg_churn__customers') }}
),

cancellations as (
    select * from {{ ref('stg_churn__cancellations') }}
),

clock as (
    select * from {{ ref('stg_churn__landed_days') }}
),

month_starts as (
    {{ churn_month_starts('clock') }}
),

reached as (
    select month_starts.prediction_at
    from month_starts
    where month_starts.prediction_at <= (select max(day_end_at) from clock)
    {% if is_incremental() %}
      and month_starts.prediction_at not in (select distinct prediction_at from {{ this }})
    {% endif %}
),

active as (
    {{ churn_active_customers('reached', 'customers', 'cancellations') }}
),

final as (
    select
        active.customer_id,
        active.prediction_at,
        active.plan,
        active.country,
        active.tenure_days,
        greatest(active.customer_loaded_at, reached_clock.reached_loaded_at) as loaded_at
    from active
    asof inner join clock as reached_clock on active.prediction_at <= reached_clock.day_end_at
)

select * from final
