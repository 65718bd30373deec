-- Valid card transactions, one per transaction id. `amount_cents` is the amount as an exact integer, so
-- sums over windows do not depend on the order the engine adds them in (exact incremental runs).
with

valid as (
    {{ valid_rows('base_fraud__transactions') }}
),

final as (
    select
        transaction_id,
        card_id,
        merchant_id,
        merchant_category,
        transaction_at,
        amount,
        round(amount * 100)::bigint as amount_cents,
        latitude,
        longitude,
        loaded_at
    from valid
)

select * from final
