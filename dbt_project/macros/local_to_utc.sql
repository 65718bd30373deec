{#-
  A wall-clock time in `tz` (a naive timestamp) as a UTC timestamptz. DuckDB's ICU `timezone()` applies the
  zone's offset in force at that wall-clock time, so the daylight-saving changes are handled: in the spring
  gap (02:00-02:59 local does not exist) the time is shifted forward by the gap, in the autumn repeat
  (01:00-01:59 local happens twice) the later, standard-time instant is taken. Sources that carry their own
  UTC instant (e.g. weather's time_hour) should use it instead for the repeated hour.
-#}
{% macro local_to_utc(naive_timestamp, tz) -%}
    timezone({{ tz }}, {{ naive_timestamp }})
{%- endmacro %}
