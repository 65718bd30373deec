-- Valid merchants (see base_fraud__merchants for the rules; broken rows are in quarantined_rows__fraud).
with

valid as (
    {{ valid_rows('base_fraud__merchants') }}
),

final as (
    select * from valid
)

select * from final
