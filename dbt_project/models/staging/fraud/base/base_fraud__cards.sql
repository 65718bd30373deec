-- Typed cards with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('fraud', 'cards')) }}
),

typed as (
    select
        nullif(trim(card_id), '') as card_id,
        try_cast(home_latitude as double) as home_latitude,
        try_cast(home_longitude as double) as home_longitude,
        try_cast(issued_at as timestamptz) as issued_at,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when card_id is null
                then 'null_key'
            when issued_at is null
                then 'unreadable_time'
            when home_latitude is null or home_longitude is null
                or home_latitude not between -90 and 90 or home_longitude not between -180 and 180
                then 'impossible_coordinates'
            when {{ is_duplicate_key(['card_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
