-- Typed support tickets with the first validation rule each row breaks (null when valid); append-only.
with

source as (
    {{ new_raw_rows_once_landed(source('churn', 'tickets')) }}
),

typed as (
    select
        nullif(trim(ticket_id), '') as ticket_id,
        nullif(trim(customer_id), '') as customer_id,
        try_cast(opened_at as timestamptz) as opened_at,
        nullif(trim(category), '') as category,
        lower(nullif(trim(severity), '')) as severity,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when ticket_id is null or customer_id is null
                then 'null_key'
            when opened_at is null
                then 'unreadable_time'
            when severity is null or severity not in ('low', 'medium', 'high', 'critical')
                then 'unknown_severity'
            when {{ is_duplicate_key(['ticket_id']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
