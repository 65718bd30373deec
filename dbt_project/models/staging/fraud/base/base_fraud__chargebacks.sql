-- Typed chargebacks with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('fraud', 'chargebacks')) }}
),

typed as (
    select
        nullif(trim(transaction_id), '') as transaction_id,
        try_cast(is_fraud as boolean) as is_fraud,
        try_cast(reported_at as timestamptz) as reported_at,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when transaction_id is null
                then 'null_key'
            when reported_at is null or is_fraud is null
                then 'unreadable_time'
            when {{ is_duplicate_key(['transaction_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
