-- Valid flights, one row per scheduled departure. `departed_at` is when the departure (and so its delay)
-- became known: the UTC schedule plus the delay, which stays right across midnight and DST changes.
with

valid as (
    {{ valid_rows('base_nycflights__flights', ['scheduled_hour_at', 'has_unreadable_delay']) }}
),

final as (
    select
        flight_id,
        carrier_code,
        flight_number,
        tail_number,
        origin_airport_code,
        destination_airport_code,
        scheduled_departure_at,
        case
            when not is_cancelled
                then {{ add_minutes('scheduled_departure_at', 'departure_delay_minutes') }}
        end as departed_at,
        departure_delay_minutes,
        arrival_delay_minutes,
        air_time_minutes,
        distance_miles,
        is_cancelled,
        loaded_at
    from valid
)

select * from final
