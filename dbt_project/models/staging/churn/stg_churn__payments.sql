-- Valid payment attempts. `amount_cents` is the amount as an exact integer (window sums are exact).
with

valid as (
    {{ valid_rows('base_churn__payments') }}
),

final as (
    select
        payment_id,
        customer_id,
        attempted_at,
        amount,
        round(amount * 100)::bigint as amount_cents,
        succeeded,
        loaded_at
    from valid
)

select * from final
