-- Typed flights with the first validation rule each row breaks (null when valid). Append-only: each run
-- types and checks only newly loaded raw rows. Rows are never dropped here: stg_nycflights__flights keeps
-- the valid ones, quarantined_rows__nycflights the others.
with

source as (
    {{ new_raw_rows(source('nycflights', 'flights')) }}
),

typed as (
    select
        nullif(trim(carrier), '') as carrier_code,
        try_cast(flight as integer) as flight_number,
        nullif(trim(tailnum), '') as tail_number,
        nullif(trim(origin), '') as origin_airport_code,
        nullif(trim(dest), '') as destination_airport_code,
        {{ local_to_utc(
            "make_timestamp(try_cast(year as integer), try_cast(month as integer), try_cast(day as integer),
                            try_cast(sched_dep_time as integer) // 100, try_cast(sched_dep_time as integer) % 100, 0)",
            "'America/New_York'") }} as scheduled_departure_at,
        try_cast(time_hour as timestamptz) as scheduled_hour_at,
        try_cast(dep_delay as integer) as departure_delay_minutes,
        try_cast(arr_delay as integer) as arrival_delay_minutes,
        try_cast(air_time as integer) as air_time_minutes,
        try_cast(distance as integer) as distance_miles,
        dep_time is null as is_cancelled,
        dep_delay is not null and try_cast(dep_delay as integer) is null as has_unreadable_delay,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when carrier_code is null or flight_number is null or origin_airport_code is null
                then 'null_key'
            when scheduled_departure_at is null
                then 'unreadable_schedule'
            when date_trunc('hour', scheduled_departure_at) is distinct from scheduled_hour_at
                then 'schedule_disagrees_with_time_hour'
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
        carrier_code
            || lpad(flight_number::varchar, 4, '0')
            || '-' || origin_airport_code
            || '-' || strftime(scheduled_departure_at at time zone 'UTC', '%Y%m%dT%H%MZ') as flight_id,
        *
    from checked
)

select * from final
