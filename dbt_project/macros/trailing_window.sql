{#
    The window frame of every rolling feature: the rows of the same partition in the half-open interval
    (t - length, t], ordered by `order_by` (default event_at). One microsecond off the length makes the
    lower end open, since timestamps here have microsecond precision. ``length`` is a whole number of days,
    hours or minutes, written '7 days', '3 hours', '90 minutes'.
#}
{% macro trailing_window(partition_by, length, order_by='event_at') -%}
    {{ return(adapter.dispatch('trailing_window')(partition_by, length, order_by)) }}
{%- endmacro %}

{% macro duckdb__trailing_window(partition_by, length, order_by) -%}
(partition by {{ partition_by }} order by {{ order_by }}
 range between (interval '{{ length }}' - interval '1 microsecond') preceding and current row)
{%- endmacro %}

{#- Spark wants the frame's offset as one literal: the length less a microsecond, as a day-to-second interval. -#}
{% macro spark__trailing_window(partition_by, length, order_by) -%}
{%- set amount, unit = length.split() -%}
{%- set unit_seconds = {'day': 86400, 'days': 86400, 'hour': 3600, 'hours': 3600, 'minute': 60, 'minutes': 60} -%}
{%- if unit not in unit_seconds -%}
    {{ exceptions.raise_compiler_error("trailing_window: length '" ~ length ~ "' is not a number of days, hours or minutes") }}
{%- endif -%}
{%- set micros = (amount | int) * unit_seconds[unit] * 1000000 - 1 -%}
{%- set seconds = micros // 1000000 -%}
{%- set offset = '%d %02d:%02d:%02d.%06d' | format(seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60,
                                                     seconds % 60, micros % 1000000) -%}
(partition by {{ partition_by }} order by {{ order_by }}
 range between interval '{{ offset }}' day to second preceding and current row)
{%- endmacro %}
