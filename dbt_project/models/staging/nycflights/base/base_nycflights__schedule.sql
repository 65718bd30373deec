-- Typed schedule rows with the first validation rule each row breaks (null when valid). Append-only: each
-- run types and checks only newly landed rows. The rules are the flights' own schedule rules.
with

source as (
    {{ new_raw_rows_once_landed(source('nycflights', 'schedule')) }}
),

typed as (
    select
        {{ nycflights_schedule_columns() }},
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            {{ nycflights_schedule_rules() }}
            when distance_miles <= 0
                then 'impossible_distance'
            when {{ is_duplicate_key(['carrier_code', 'flight_number', 'origin_airport_code', 'scheduled_departure_at']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select
        {{ nycflights_flight_id() }} as flight_id,
        *
    from checked
)

select * from final
