-- The flight-delay inference spine: one row per scheduled flight, from the published schedule, with the
-- prediction time and request features of the label model (the same macro), known before the flight
-- departs. Batch inference scores these rows; the label model's row for the same flight_id arrives with
-- the outcome.
with

schedule as (
    select * from {{ ref('stg_nycflights__schedule') }}
),

new_schedule as (
    {{ rows_loaded_since_watermark('schedule') }}
),

final as (
    select
        {{ flight_delay_spine_columns() }},
        loaded_at
    from new_schedule
)

select * from final
