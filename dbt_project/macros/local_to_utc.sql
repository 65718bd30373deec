{#-
  A wall-clock time in `tz` (a naive timestamp) as a UTC instant. The zone's offset in force at that
  wall-clock time applies, so the daylight-saving changes are handled: in the spring gap (02:00-02:59 local
  does not exist) the time is shifted forward by the gap, in the autumn repeat (01:00-01:59 local happens
  twice) the later, standard-time instant is taken. Sources that carry their own UTC instant (e.g.
  weather's time_hour) should use it instead for the repeated hour.
-#}
{% macro local_to_utc(naive_timestamp, tz) -%}
    {{ return(adapter.dispatch('local_to_utc')(naive_timestamp, tz)) }}
{%- endmacro %}

{#- DuckDB's ICU `timezone()` has exactly the rules above. -#}
{% macro duckdb__local_to_utc(naive_timestamp, tz) -%}
    timezone({{ tz }}, {{ naive_timestamp }})
{%- endmacro %}

{#-
  Spark's to_utc_timestamp shifts a time in the gap forward too, but in the repeated hour it takes the
  earlier (daylight-time) instant; when the instant one hour later shows the same wall-clock time, the time
  is in the repeated hour and that later instant is the one taken. (Zones whose clocks go back by other
  than one hour are not handled; New York's go back by one.)
-#}
{% macro spark__local_to_utc(naive_timestamp, tz) -%}
    {%- set earlier = 'to_utc_timestamp(' ~ naive_timestamp ~ ', ' ~ tz ~ ')' -%}
    case
            when from_utc_timestamp({{ earlier }} + interval 1 hour, {{ tz }}) = {{ naive_timestamp }}
                then {{ earlier }} + interval 1 hour
            else {{ earlier }}
        end
{%- endmacro %}
