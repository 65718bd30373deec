-- Static attributes of each airframe, one row per plane.
-- Event time: the data has one undated row per plane, so we use the start of its year of manufacture
-- (the physical facts hold from then; refits are not in the data), and 1900-01-01 when the year is
-- unknown. This is a documented approximation: the registry snapshot itself was published later.
with

planes as (
    select * from {{ ref('stg_nycflights__planes') }}
),

new_planes as (
    {{ rows_loaded_since_watermark('planes') }}
),

final as (
    select
        tail_number,
        {{ make_utc_timestamp('coalesce(year_built, 1900)', 1, 1) }} as event_at,
        year_built,
        aircraft_type,
        manufacturer,
        aircraft_model,
        engine_count,
        seat_count,
        engine_type,
        loaded_at
    from new_planes
)

select * from final
