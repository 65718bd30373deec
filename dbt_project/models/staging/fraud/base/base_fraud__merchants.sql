-- Typed merchants with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('fraud', 'merchants')) }}
),

typed as (
    select
        nullif(trim(merchant_id), '') as merchant_id,
        nullif(trim(merchant_category), '') as merchant_category,
        try_cast(latitude as double) as latitude,
        try_cast(longitude as double) as longitude,
        try_cast(is_online as boolean) as is_online,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when merchant_id is null
                then 'null_key'
            when latitude is null or longitude is null
                or latitude not between -90 and 90 or longitude not between -180 and 180
                then 'impossible_coordinates'
            when {{ is_duplicate_key(['merchant_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
