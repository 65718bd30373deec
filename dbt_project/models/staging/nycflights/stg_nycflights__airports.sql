-- Valid airports rows (see base_nycflights__airports for the rules; broken rows are in quarantined_rows__nycflights).
with

valid as (
    {{ valid_rows('base_nycflights__airports') }}
),

final as (
    select * from valid
)

select * from final
