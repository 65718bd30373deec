-- Valid weather rows (see base_nycflights__weather for the rules; broken rows are in quarantined_rows__nycflights).
with

valid as (
    {{ valid_rows('base_nycflights__weather') }}
),

final as (
    select * from valid
)

select * from final
