-- Typed payment attempts with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('churn', 'payments')) }}
),

typed as (
    select
        nullif(trim(payment_id), '') as payment_id,
        nullif(trim(customer_id), '') as customer_id,
        try_cast(attempted_at as timestamptz) as attempted_at,
        try_cast(amount as double) as amount,
        try_cast(succeeded as boolean) as succeeded,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when payment_id is null or customer_id is null
                then 'null_key'
            when attempted_at is null or succeeded is null
                then 'unreadable_time'
            when amount is null or amount <= 0 or amount > 10000 or round(amount, 2) <> amount
                then 'impossible_amount'
            when {{ is_duplicate_key(['payment_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
