-- The churn target: will a customer active at a month's start cancel within 30 days? One row per customer
-- active at each month start (00:00 UTC, the prediction time), once its outcome is known.
--
-- A row exists only when the data covers the whole outcome window, [prediction_at, prediction_at + 30
-- days): the data clock (stg_churn__landed_days) has reached `label_known_at`. Before that, "not cancelled
-- yet" is not a label. Once there, every cancellation of the window has landed, so the row is final: a
-- month's rows are appended once and never change, and training on any range never sees a provisional
-- "stays". The month's customers are scored before the outcome from spine_customer__active, the same
-- customers with the same columns (macros/churn.sql).
--
-- Features are joined at prediction_at itself: they hold what was known then (a day's usage at its end,
-- payments and tickets at their time, none of which happens exactly at midnight).
{%- set window = "interval '720 hours'" %}
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

known as (
    select month_starts.prediction_at
    from month_starts
    where month_starts.prediction_at + {{ window }} <= (select max(day_end_at) from clock)
    {% if is_incremental() %}
      and month_starts.prediction_at not in (select distinct prediction_at from {{ this }})
    {% endif %}
),

active as (
    {{ churn_active_customers('known', 'customers', 'cancellations') }}
),

outcome as (
    select
        active.*,
        active.cancelled_at < active.prediction_at + {{ window }} as churned_in_window,
        active.prediction_at + {{ window }} as label_known_at
    from active
),

final as (
    select
        outcome.customer_id,
        outcome.prediction_at,
        outcome.plan,
        outcome.country,
        outcome.tenure_days,
        coalesce(outcome.churned_in_window, false) as churned_30d,
        case when outcome.churned_in_window then outcome.cancelled_at end as cancelled_at,
        case when outcome.churned_in_window then outcome.cancellation_reason end as cancellation_reason,
        outcome.label_known_at,
        greatest(
            outcome.customer_loaded_at,
            case when outcome.churned_in_window then outcome.cancellation_loaded_at end,
            known_clock.reached_loaded_at
        ) as loaded_at
    from outcome
    asof inner join clock as known_clock on outcome.label_known_at <= known_clock.day_end_at
)

select * from final
