-- The flight-delay target: will a flight leave more than `flight_delay_threshold_minutes` late, predicted
-- `flight_delay_lead_hours` before its schedule. One row per scheduled flight.
-- Cancelled flights count as delayed (is_delayed = true): to a passenger a cancellation is the worst
-- delay, and dropping them would teach the model that bad days look better than they are. Their label
-- becomes known at the scheduled departure; a flown flight's at its actual departure.
-- The schedule columns (hour, weekday, distance) are known when the prediction is made: request features.
-- The columns known before departure are the inference spine's own (macro flight_delay_spine_columns).
with

flights as (
    select * from {{ ref('stg_nycflights__flights') }}
),

new_flights as (
    {{ rows_loaded_since_watermark('flights') }}
),

final as (
    select
        {{ flight_delay_spine_columns() }},
        coalesce(departed_at, scheduled_departure_at) as label_known_at,
        departure_delay_minutes,
        is_cancelled,
        is_cancelled or departure_delay_minutes > {{ var('flight_delay_threshold_minutes') }} as is_delayed,
        loaded_at
    from new_flights
)

select * from final
