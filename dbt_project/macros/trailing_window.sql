{#
    The window frame of every rolling feature: the rows of the same partition in the half-open interval
    (t - length, t], ordered by event_at. One microsecond off the length makes the lower end open, since
    timestamps here have microsecond precision. ``length`` is a DuckDB interval literal ('7 days', '168 hours').
#}
{% macro trailing_window(partition_by, length) -%}
(partition by {{ partition_by }} order by event_at
 range between (interval '{{ length }}' - interval '1 microsecond') preceding and current row)
{%- endmacro %}
