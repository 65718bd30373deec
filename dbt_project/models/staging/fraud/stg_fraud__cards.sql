-- Valid cards (see base_fraud__cards for the rules; broken rows are in quarantined_rows__fraud).
with

valid as (
    {{ valid_rows('base_fraud__cards') }}
),

final as (
    select * from valid
)

select * from final
