-- Typed flights with the first validation rule each row breaks (null when valid). Append-only: each run
-- types and checks only newly loaded raw rows. Rows are never dropped here: stg_nycflights__flights keeps
-- the valid ones, quarantined_rows__nycflights the others.
with

source as (
    {{ new_raw_rows(source('nycflights', 'flights')) }}
),

typed as (
    select
        {{ nycflights_schedule_columns() }},
        try_cast(dep_delay as integer) as departure_delay_minutes,
        try_cast(arr_delay as integer) as arrival_delay_minutes,
        try_cast(air_time as integer) as air_time_minutes,
        dep_time is null as is_cancelled,
        dep_delay is not null and try_cast(dep_delay as integer) is null as has_unreadable_delay,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            {{ nycflights_schedule_rules() }}
            when has_unreadable_delay
                then 'unreadable_delay'
            when not is_cancelled and departure_delay_minutes is null
                then 'departed_without_delay'
            when departure_delay_minutes < -120 or departure_delay_minutes > 48 * 60
                then 'impossible_delay'
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
