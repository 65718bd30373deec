-- Valid support tickets, with the severity as a level (1 = low .. 4 = critical).
with

valid as (
    {{ valid_rows('base_churn__tickets') }}
),

final as (
    select
        ticket_id,
        customer_id,
        opened_at,
        category,
        severity,
        case severity when 'low' then 1 when 'medium' then 2 when 'high' then 3 when 'critical' then 4 end
            as severity_level,
        loaded_at
    from valid
)

select * from final
