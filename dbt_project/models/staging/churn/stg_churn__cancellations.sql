-- Valid cancellations, one per customer.
with

valid as (
    {{ valid_rows('base_churn__cancellations') }}
),

final as (
    select
        customer_id,
        cancelled_at,
        reason,
        loaded_at
    from valid
)

select * from final
