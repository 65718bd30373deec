-- The domain's data clock: one row per UTC day of which activity (usage, tickets, payments, cancellations)
-- has landed. Days land in order, so once a day has landed everything up to its end, `day_end_at`, is
-- known; `reached_loaded_at` is when that first became true (the earliest ingestion time of this day's
-- rows or any later day's). Models whose rows exist "once the data covers time t" (window exits, labels
-- whose outcome window has passed, inference spines) take t from here and their `loaded_at` from
-- `reached_loaded_at`, so an incremental run sees them as new when the clock passes t.
with

activity as (
    select usage_date as landed_day, loaded_at from {{ ref('stg_churn__usage') }}
    union all
    select (opened_at at time zone 'UTC')::date, loaded_at from {{ ref('stg_churn__tickets') }}
    union all
    select (attempted_at at time zone 'UTC')::date, loaded_at from {{ ref('stg_churn__payments') }}
    union all
    select (cancelled_at at time zone 'UTC')::date, loaded_at from {{ ref('stg_churn__cancellations') }}
),

per_day as (
    select
        landed_day,
        min(loaded_at) as first_loaded_at
    from activity
    group by all
),

final as (
    select
        landed_day,
        timezone('UTC', landed_day + interval 1 day) as day_end_at,
        min(first_loaded_at) over (order by landed_day desc rows between unbounded preceding and current row)
            as reached_loaded_at
    from per_day
)

select * from final
