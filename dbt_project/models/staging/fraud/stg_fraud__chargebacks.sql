-- Valid chargebacks, one per transaction, with when they were reported.
with

valid as (
    {{ valid_rows('base_fraud__chargebacks') }}
),

final as (
    select
        transaction_id,
        is_fraud,
        reported_at,
        loaded_at
    from valid
)

select * from final
