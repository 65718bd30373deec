-- Typed airlines with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows(source('nycflights', 'airlines')) }}
),

typed as (
    select
        nullif(trim(carrier), '') as carrier_code,
        name as airline_name,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when carrier_code is null
                then 'null_key'
            when {{ is_duplicate_key(['carrier_code']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
