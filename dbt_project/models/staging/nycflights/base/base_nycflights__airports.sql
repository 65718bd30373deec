-- Typed airports with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows(source('nycflights', 'airports')) }}
),

typed as (
    select
        nullif(trim(faa), '') as airport_code,
        name as airport_name,
        try_cast(lat as double) as latitude,
        try_cast(lon as double) as longitude,
        try_cast(alt as integer) as altitude_ft,
        tzone as time_zone,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when airport_code is null
                then 'null_key'
            when latitude not between -90 and 90 or longitude not between -180 and 180
                then 'impossible_coordinates'
            when {{ is_duplicate_key(['airport_code']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
