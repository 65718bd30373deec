-- Valid daily usage, one row per customer and UTC day. A day's usage is complete, hence known, at the end
-- of the day: `day_end_at` (the next midnight, UTC) is the time features see it at.
with

valid as (
    {{ valid_rows('base_churn__usage') }}
),

final as (
    select
        customer_id,
        usage_date,
        timezone('UTC', usage_date + interval 1 day) as day_end_at,
        sessions,
        minutes_used,
        loaded_at
    from valid
)

select * from final
