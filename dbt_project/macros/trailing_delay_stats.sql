{#-
  Trailing departure-delay statistics per entity, one row per entity per moment a delay became known.

  A flight contributes at `departed_at` (when its delay became known), never at its schedule, so a row at
  time t only uses flights that had left by t. Each window is half-open: (t - N days, t].
  `loaded_at` of a row is the latest ingestion time of the flights in its widest window, i.e. when the row's
  values became computable; it is also the incremental watermark.

  Incremental runs are exact: see macros/windowed_incremental.sql.
-#}
{% macro trailing_delay_stats(entity_columns, windows_days, delay_threshold_minutes) -%}
{%- set widest = windows_days | max -%}
{%- set keys = entity_columns | join(', ') -%}
{%- set window_lengths = [] -%}
{%- for days in windows_days -%}{%- do window_lengths.append(days ~ ' days') -%}{%- endfor -%}
with

flights as (
    select * from {{ ref('stg_nycflights__flights') }}
),

departed as (
    select
        {{ keys }},
        departed_at,
        departure_delay_minutes,
        loaded_at
    from flights
    where departed_at is not null
    {%- for column in entity_columns %}
      and {{ column }} is not null
    {%- endfor %}
),

{{ windowed_incremental_scope('departed', 'departed_at', widest ~ ' days', windows=window_lengths,
                              partition_by=entity_columns) }}

per_moment as (
    select
        {{ keys }},
        departed_at as event_at,
        count(*) as flight_count,
        sum(departure_delay_minutes) as delay_minutes_sum,
        count(*) filter (where departure_delay_minutes > {{ delay_threshold_minutes }}) as delayed_count,
        max(loaded_at) as loaded_at
    from in_scope
    group by all
),

windowed as (
    select
        {{ keys }},
        event_at,
        {%- for days in windows_days %}
        sum(flight_count) over w{{ days }} as flight_count_{{ days }}d,
        sum(delay_minutes_sum) over w{{ days }} / sum(flight_count) over w{{ days }} as departure_delay_mean_{{ days }}d,
        sum(delayed_count) over w{{ days }} / sum(flight_count) over w{{ days }} as delayed_share_{{ days }}d,
        {%- endfor %}
        max(loaded_at) over w{{ widest }} as loaded_at
    from per_moment
    window
        {%- for days in windows_days %}
        w{{ days }} as {{ trailing_window(keys, days ~ ' days') }}{{ "," if not loop.last }}
        {%- endfor %}
),

final as (
    select
        {%- for column in entity_columns %}
        {{ column }},
        {%- endfor %}
        {{ as_timestamptz('event_at') }} as event_at,
        {%- for days in windows_days %}
        flight_count_{{ days }}d::integer as flight_count_{{ days }}d,
        departure_delay_mean_{{ days }}d::double as departure_delay_mean_{{ days }}d,
        delayed_share_{{ days }}d::double as delayed_share_{{ days }}d,
        {%- endfor %}
        {{ event_date_partition('event_at') }}
        {{ as_timestamptz('loaded_at') }} as loaded_at
    from windowed
    {{ in_recompute_range('event_at') }}
)

select * from final
{%- endmacro %}
