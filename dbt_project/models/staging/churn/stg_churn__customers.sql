-- Valid customers (see base_churn__customers for the rules; broken rows are in quarantined_rows__churn).
with

valid as (
    {{ valid_rows('base_churn__customers') }}
),

final as (
    select
        customer_id,
        plan,
        monthly_price,
        country,
        signup_channel,
        signup_at,
        loaded_at
    from valid
)

select * from final
