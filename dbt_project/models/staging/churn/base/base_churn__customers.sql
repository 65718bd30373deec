-- Typed customers with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('churn', 'customers')) }}
),

typed as (
    select
        nullif(trim(customer_id), '') as customer_id,
        nullif(trim(plan), '') as plan,
        try_cast(monthly_price as double) as monthly_price,
        nullif(trim(country), '') as country,
        nullif(trim(signup_channel), '') as signup_channel,
        try_cast(signup_at as timestamptz) as signup_at,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when customer_id is null
                then 'null_key'
            when signup_at is null
                then 'unreadable_time'
            when monthly_price is null or monthly_price <= 0 or monthly_price > 10000
                or round(monthly_price, 2) <> monthly_price
                then 'impossible_amount'
            when {{ is_duplicate_key(['customer_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
