-- Typed airlines with the first validation rule each row breaks (null when valid).
with

source as (
    select * from {{ source('nycflights', 'airlines') }}
),

typed as (
    select
        nullif(trim(carrier), '') as carrier_code,
        name as airline_name,
        _loaded_at as loaded_at,
        _batch_id as batch_id,
        to_json(source) as record
    from source
),

checked as (
    select
        *,
        case
            when carrier_code is null
                then 'null_key'
            when row_number() over (partition by carrier_code order by loaded_at, record) > 1
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
