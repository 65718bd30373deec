-- Typed daily usage with the first validation rule each row breaks (null when valid). Append-only: each
-- run checks only newly landed raw rows. Rows are never dropped here: stg_churn__usage keeps the valid
-- ones, quarantined_rows__churn the others.
with

source as (
    {{ new_raw_rows_once_landed(source('churn', 'usage')) }}
),

typed as (
    select
        nullif(trim(customer_id), '') as customer_id,
        try_cast(usage_date as date) as usage_date,
        try_cast(sessions as bigint) as sessions,
        try_cast(minutes_used as bigint) as minutes_used,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when customer_id is null or usage_date is null
                then 'null_key'
            when sessions is null or minutes_used is null or sessions < 0 or minutes_used < 0
                or minutes_used > 1440 or (sessions = 0 and minutes_used > 0)
                then 'impossible_usage'
            when {{ is_duplicate_key(['customer_id', 'usage_date']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
