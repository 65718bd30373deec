-- Hourly weather per origin airport, plus what the last three hours add (rain total, worst visibility).
-- Event time = the observation's UTC instant. Trailing windows are half-open: (t - 3 hours, t].
-- Incremental runs are exact (macros/windowed_incremental.sql); loaded_at is the watermark.
with

weather as (
    select * from {{ ref('stg_nycflights__weather') }}
),

{{ windowed_incremental_scope('weather', 'observed_at', '3 hours') }}

windowed as (
    select
        *,
        sum(precipitation_in) over last_3_hours as precipitation_3h_in,
        min(visibility_mi) over last_3_hours as visibility_min_3h_mi,
        max(loaded_at) over last_3_hours as window_loaded_at
    from in_scope
    window last_3_hours as {{ trailing_window('airport_code', '3 hours', order_by='observed_at') }}
),

final as (
    select
        airport_code,
        {{ as_timestamptz('observed_at') }} as event_at,
        temperature_f,
        dew_point_f,
        humidity_pct,
        wind_direction_deg,
        wind_speed_mph,
        wind_gust_mph,
        precipitation_in,
        pressure_mb,
        visibility_mi,
        precipitation_3h_in,
        visibility_min_3h_mi,
        {{ event_date_partition('observed_at') }}
        {{ as_timestamptz('window_loaded_at') }} as loaded_at
    from windowed
    {{ in_recompute_range('observed_at') }}
)

select * from final
