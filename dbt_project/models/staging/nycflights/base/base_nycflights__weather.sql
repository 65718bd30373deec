-- Typed hourly weather with the first validation rule each row breaks (null when valid); append-only.
-- The event time is the source's own UTC instant (time_hour): converting the local hour fields would give
-- the repeated 01:00 of 2013-11-03 one instant twice.
with

source as (
    {{ new_raw_rows(source('nycflights', 'weather')) }}
),

typed as (
    select
        nullif(trim(origin), '') as airport_code,
        {{ try_as_timestamptz('time_hour') }} as observed_at,
        try_cast(temp as double) as temperature_f,
        try_cast(dewp as double) as dew_point_f,
        try_cast(humid as double) as humidity_pct,
        try_cast(wind_dir as double) as wind_direction_deg,
        try_cast(wind_speed as double) as wind_speed_mph,
        try_cast(wind_gust as double) as wind_gust_mph,
        try_cast(precip as double) as precipitation_in,
        try_cast(pressure as double) as pressure_mb,
        try_cast(visib as double) as visibility_mi,
        {{ raw_row_bookkeeping() }}
    from source
),

checked as (
    select
        *,
        case
            when airport_code is null or observed_at is null
                then 'null_key'
            when temperature_f not between -60 and 130
                then 'impossible_temperature'
            when humidity_pct not between 0 and 100
                then 'impossible_humidity'
            when wind_speed_mph not between 0 and 250 or wind_gust_mph not between 0 and 300
                then 'impossible_wind'
            when wind_direction_deg not between 0 and 360
                then 'impossible_wind_direction'
            when precipitation_in < 0 or visibility_mi < 0
                then 'impossible_negative'
            when pressure_mb not between 850 and 1100
                then 'impossible_pressure'
            when {{ is_duplicate_key(['airport_code', 'observed_at']) }}
                then 'duplicate_key'
        end as rule_broken
    from typed
),

final as (
    select * from checked
)

select * from final
