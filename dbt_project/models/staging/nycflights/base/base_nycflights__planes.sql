-- Typed planes with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows(source('nycflights', 'planes')) }}
),

typed as (
    select
        nullif(trim(tailnum), '') as tail_number,
        try_cast(year as integer) as year_built,
        type as aircraft_type,
        manufacturer,
        model as aircraft_model,
        try_cast(engines as integer) as engine_count,
        try_cast(seats as integer) as seat_count,
        engine as engine_type,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when tail_number is null
                then 'null_key'
            when year_built not between 1903 and 2014
                then 'impossible_year_built'
            when seat_count <= 0 or engine_count < 0
                then 'impossible_capacity'
            when {{ is_duplicate_key(['tail_number']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
