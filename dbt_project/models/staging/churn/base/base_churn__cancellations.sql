-- Typed cancellations with the first validation rule each row breaks (null when valid); append-only. A
-- subscription ends once: a second cancellation of the same customer is a duplicate.
with

source as (
    {{ new_raw_rows_once_landed(source('churn', 'cancellations')) }}
),

typed as (
    select
        nullif(trim(customer_id), '') as customer_id,
        try_cast(cancelled_at as timestamptz) as cancelled_at,
        nullif(trim(reason), '') as reason,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when customer_id is null
                then 'null_key'
            when cancelled_at is null
                then 'unreadable_time'
            when {{ is_duplicate_key(['customer_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
