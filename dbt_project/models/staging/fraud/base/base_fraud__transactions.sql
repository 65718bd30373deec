-- Typed card transactions with the first validation rule each row breaks (null when valid). Append-only:
-- each run checks only newly landed raw rows. Rows are never dropped here: stg_fraud__transactions keeps
-- the valid ones, quarantined_rows__fraud the others.
with

source as (
    {{ new_raw_rows_once_landed(source('fraud', 'transactions')) }}
),

typed as (
    select
        nullif(trim(transaction_id), '') as transaction_id,
        nullif(trim(card_id), '') as card_id,
        nullif(trim(merchant_id), '') as merchant_id,
        nullif(trim(merchant_category), '') as merchant_category,
        try_cast(amount as double) as amount,
        try_cast(latitude as double) as latitude,
        try_cast(longitude as double) as longitude,
        try_cast(transaction_at as timestamptz) as transaction_at,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when transaction_id is null or card_id is null or merchant_id is null
                then 'null_key'
            when transaction_at is null
                then 'unreadable_time'
            when amount is null or amount <= 0 or amount > 1000000 or round(amount, 2) <> amount
                then 'impossible_amount'
            when latitude is null or longitude is null
                or latitude not between -90 and 90 or longitude not between -180 and 180
                then 'impossible_coordinates'
            when {{ is_duplicate_key(['transaction_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
