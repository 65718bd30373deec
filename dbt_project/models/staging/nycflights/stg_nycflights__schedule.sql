-- Valid scheduled flights, one row per planned departure, published before the day they fly.
with

valid as (
    {{ valid_rows('base_nycflights__schedule', ['scheduled_hour_at']) }}
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
        distance_miles,
        loaded_at
    from valid
)

select * from final
