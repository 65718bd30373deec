{#-
  The SQL that differs between the engines the project builds on (DuckDB, the embedded default, and Spark
  through dbt-spark), one small macro per construct so the models read the same on both. Each dispatches
  to `duckdb__<name>` or `spark__<name>` (dbt's adapter.dispatch); the DuckDB implementations render the
  SQL the models had before there was a second engine, so a DuckDB build is unchanged.

  Time on Spark: a Spark `timestamp` is an instant (TIMESTAMP_LTZ), shown and truncated in the session
  time zone, which the `spark` target sets to UTC (profiles.yml). So a DuckDB `timestamptz` is a Spark
  `timestamp`, and date_trunc / to_date / date_format work on UTC days and hours, as on DuckDB.
-#}

{#-
  How a CTE read more than once is planned. DuckDB materializes such a CTE whole before its first read;
  `cte_inlined()` has each read plan it again instead, so each read's filters reach the scans under it
  (the fraud merchant events: 2.1M transactions materialized, against the month a read keeps). Spark
  plans CTEs itself: it renders nothing there.
-#}
{% macro cte_inlined() -%}
    {{ return(adapter.dispatch('cte_inlined')()) }}
{%- endmacro %}
{% macro default__cte_inlined() %}{{ return('') }}{% endmacro %}
{% macro duckdb__cte_inlined() %}{{ return('not materialized') }}{% endmacro %}

{#- The data type of a UTC instant, for casts (`timestamptz` on DuckDB). -#}
{% macro timestamptz_type() -%}
    {{ return(adapter.dispatch('timestamptz_type')()) }}
{%- endmacro %}
{% macro duckdb__timestamptz_type() %}{{ return('timestamptz') }}{% endmacro %}
{% macro spark__timestamptz_type() %}{{ return('timestamp') }}{% endmacro %}

{#- `expression` as a UTC instant. -#}
{% macro as_timestamptz(expression) -%}
    {{ return(adapter.dispatch('as_timestamptz')(expression)) }}
{%- endmacro %}
{% macro duckdb__as_timestamptz(expression) %}{{ return(expression ~ '::timestamptz') }}{% endmacro %}
{% macro spark__as_timestamptz(expression) %}{{ return('cast(' ~ expression ~ ' as timestamp)') }}{% endmacro %}

{#- Text read as a UTC instant, NULL when it is not one ('2013-01-01T10:00:00Z'). -#}
{% macro try_as_timestamptz(expression) -%}
    try_cast({{ expression }} as {{ timestamptz_type() }})
{%- endmacro %}

{#- `expression` as text. -#}
{% macro as_text(expression) -%}
    {{ return(adapter.dispatch('as_text')(expression)) }}
{%- endmacro %}
{% macro duckdb__as_text(expression) %}{{ return(expression ~ '::varchar') }}{% endmacro %}
{% macro spark__as_text(expression) %}{{ return('cast(' ~ expression ~ ' as string)') }}{% endmacro %}

{#-
  A column type as the engine spells it. The YAML (contracts, sources) declares DuckDB's names; Spark has
  no varchar without a length, no timestamptz and no json.
-#}
{% macro engine_data_type(data_type) -%}
    {{ return(adapter.dispatch('engine_data_type')(data_type)) }}
{%- endmacro %}
{% macro default__engine_data_type(data_type) %}{{ return(data_type) }}{% endmacro %}
{% macro spark__engine_data_type(data_type) -%}
    {%- set spark_names = {
        'varchar': 'string', 'text': 'string', 'json': 'string',
        'timestamp with time zone': 'timestamp', 'timestamptz': 'timestamp',
        'integer': 'int', 'int4': 'int', 'int8': 'bigint', 'float8': 'double',
    } -%}
    {{ return(spark_names.get(data_type | trim | lower, data_type)) }}
{%- endmacro %}

{#- A typed NULL (`data_type` as the YAML declares it). -#}
{% macro typed_null(data_type) -%}
    {{ return(adapter.dispatch('typed_null')(data_type)) }}
{%- endmacro %}
{% macro duckdb__typed_null(data_type) %}{{ return('null::' ~ data_type) }}{% endmacro %}
{% macro spark__typed_null(data_type) %}{{ return('cast(null as ' ~ engine_data_type(data_type) ~ ')') }}{% endmacro %}

{#- An instant before every other, for `coalesce(max(t), ...)` over an empty table. -#}
{% macro timestamp_minus_infinity() -%}
    {{ return(adapter.dispatch('timestamp_minus_infinity')()) }}
{%- endmacro %}
{% macro duckdb__timestamp_minus_infinity() %}{{ return("'-infinity'::timestamptz") }}{% endmacro %}
{% macro spark__timestamp_minus_infinity() %}{{ return("timestamp'0001-01-01 00:00:00Z'") }}{% endmacro %}

{#- An instant after every other. -#}
{% macro timestamp_infinity() -%}
    {{ return(adapter.dispatch('timestamp_infinity')()) }}
{%- endmacro %}
{% macro duckdb__timestamp_infinity() %}{{ return("'infinity'::timestamptz") }}{% endmacro %}
{% macro spark__timestamp_infinity() %}{{ return("timestamp'9999-12-31 23:59:59.999999Z'") }}{% endmacro %}

{#- `timestamp` plus a whole number of minutes (an expression). -#}
{% macro add_minutes(timestamp, minutes) -%}
    {{ return(adapter.dispatch('add_minutes')(timestamp, minutes)) }}
{%- endmacro %}
{% macro duckdb__add_minutes(timestamp, minutes) %}{{ return(timestamp ~ ' + to_minutes(' ~ minutes ~ ')') }}{% endmacro %}
{% macro spark__add_minutes(timestamp, minutes) %}{{ return('timestampadd(minute, ' ~ minutes ~ ', ' ~ timestamp ~ ')') }}{% endmacro %}

{#- `timestamp` minus a whole number of hours (an expression). -#}
{% macro subtract_hours(timestamp, hours) -%}
    {{ return(adapter.dispatch('subtract_hours')(timestamp, hours)) }}
{%- endmacro %}
{% macro duckdb__subtract_hours(timestamp, hours) %}{{ return(timestamp ~ ' - to_hours(' ~ hours ~ ')') }}{% endmacro %}
{% macro spark__subtract_hours(timestamp, hours) %}{{ return('timestampadd(hour, -(' ~ hours ~ '), ' ~ timestamp ~ ')') }}{% endmacro %}

{#- Integer division, truncating (DuckDB `//`, Spark `div`). -#}
{% macro integer_divide(dividend, divisor) -%}
    {{ return(adapter.dispatch('integer_divide')(dividend, divisor)) }}
{%- endmacro %}
{% macro duckdb__integer_divide(dividend, divisor) %}{{ return(dividend ~ ' // ' ~ divisor) }}{% endmacro %}
{% macro spark__integer_divide(dividend, divisor) %}{{ return('(' ~ dividend ~ ') div (' ~ divisor ~ ')') }}{% endmacro %}

{#-
  A naive wall-clock timestamp from its parts (no time zone yet: see local_to_utc). DuckDB's make_timestamp
  carries an hour or minute past its range into the next day (24:00 is the next midnight); Spark's does the
  same here (a day plus an interval), and gives NULL, not an error, for a date that does not exist.
-#}
{% macro make_wall_clock_timestamp(year, month, day, hour, minute) -%}
    {{ return(adapter.dispatch('make_wall_clock_timestamp')(year, month, day, hour, minute)) }}
{%- endmacro %}
{% macro duckdb__make_wall_clock_timestamp(year, month, day, hour, minute) -%}
    {{ return('make_timestamp(' ~ [year, month, day, hour, minute, 0] | join(', ') ~ ')') }}
{%- endmacro %}
{% macro spark__make_wall_clock_timestamp(year, month, day, hour, minute) -%}
    {{ return('(try_make_timestamp(' ~ year ~ ', ' ~ month ~ ', ' ~ day ~ ', 0, 0, 0) + make_dt_interval(0, '
              ~ hour ~ ', ' ~ minute ~ ', 0))') }}
{%- endmacro %}

{#- The UTC instant of a calendar date and time of day given in UTC. -#}
{% macro make_utc_timestamp(year, month, day, hour=0, minute=0, second=0) -%}
    {{ return(adapter.dispatch('make_utc_timestamp')(year, month, day, hour, minute, second)) }}
{%- endmacro %}
{% macro duckdb__make_utc_timestamp(year, month, day, hour, minute, second) -%}
    {{ return('make_timestamptz(' ~ [year, month, day, hour, minute, second] | join(', ') ~ ", 'UTC')") }}
{%- endmacro %}
{% macro spark__make_utc_timestamp(year, month, day, hour, minute, second) -%}
    {{ return('make_timestamp(' ~ [year, month, day, hour, minute, second] | join(', ') ~ ", 'UTC')") }}
{%- endmacro %}

{#- A UTC instant as the wall-clock time (naive timestamp) in the IANA zone `tz` (a SQL string). -#}
{% macro utc_to_local(timestamp, tz) -%}
    {{ return(adapter.dispatch('utc_to_local')(timestamp, tz)) }}
{%- endmacro %}
{% macro duckdb__utc_to_local(timestamp, tz) %}{{ return(timestamp ~ ' at time zone ' ~ tz) }}{% endmacro %}
{% macro spark__utc_to_local(timestamp, tz) %}{{ return('from_utc_timestamp(' ~ timestamp ~ ', ' ~ tz ~ ')') }}{% endmacro %}

{#- ISO day of the week of a (naive) timestamp, 1 = Monday .. 7 = Sunday. -#}
{% macro iso_weekday(timestamp) -%}
    {{ return(adapter.dispatch('iso_weekday')(timestamp)) }}
{%- endmacro %}
{% macro duckdb__iso_weekday(timestamp) %}{{ return('isodow(' ~ timestamp ~ ')') }}{% endmacro %}
{% macro spark__iso_weekday(timestamp) %}{{ return('extract(dayofweek_iso from ' ~ timestamp ~ ')') }}{% endmacro %}

{#- A UTC instant as compact text to the minute, '20130101T0515Z' (part of the flights' key). -#}
{% macro utc_minute_text(timestamp) -%}
    {{ return(adapter.dispatch('utc_minute_text')(timestamp)) }}
{%- endmacro %}
{% macro duckdb__utc_minute_text(timestamp) -%}
    {{ return('strftime(' ~ timestamp ~ " at time zone 'UTC', '%Y%m%dT%H%MZ')") }}
{%- endmacro %}
{% macro spark__utc_minute_text(timestamp) -%}
    {{ return('date_format(' ~ timestamp ~ ", \"yyyyMMdd'T'HHmm'Z'\")") }}
{%- endmacro %}

{#-
  A row of the relation or CTE `relation` as JSON text, every column by name, NULLs kept (Spark's to_json
  drops them unless told not to). Values are each engine's text of them: DuckDB writes an instant as
  '2026-01-01 00:00:00+00', Spark as '2026-01-01T00:00:00.000Z'.
-#}
{% macro row_to_json(relation) -%}
    {{ return(adapter.dispatch('row_to_json')(relation)) }}
{%- endmacro %}
{% macro duckdb__row_to_json(relation) %}{{ return('to_json(' ~ relation ~ ')') }}{% endmacro %}
{% macro spark__row_to_json(relation) -%}
    {{ return('to_json(struct(' ~ relation ~ ".*), map('ignoreNullFields', 'false'))") }}
{%- endmacro %}

{#- Every column but `columns` (a list), for a select list: `select {{ star_except(['a']) }} from t`. -#}
{% macro star_except(columns) -%}
    {{ return(adapter.dispatch('star_except')(columns)) }}
{%- endmacro %}
{% macro duckdb__star_except(columns) %}{{ return('* exclude (' ~ columns | join(', ') ~ ')') }}{% endmacro %}
{% macro spark__star_except(columns) %}{{ return('* except (' ~ columns | join(', ') ~ ')') }}{% endmacro %}

{#- The value of `value` on the row with the largest `ordering` (an aggregate). -#}
{% macro arg_max(value, ordering) -%}
    {{ return(adapter.dispatch('arg_max')(value, ordering)) }}
{%- endmacro %}
{% macro duckdb__arg_max(value, ordering) %}{{ return('arg_max(' ~ value ~ ', ' ~ ordering ~ ')') }}{% endmacro %}
{% macro spark__arg_max(value, ordering) %}{{ return('max_by(' ~ value ~ ', ' ~ ordering ~ ')') }}{% endmacro %}

{#- A query that fails with `message` (a SQL text expression) for each row of `relation` (a CTE name). -#}
{% macro raise_error_for_each_row(message, relation) -%}
    {{ return(adapter.dispatch('raise_error_for_each_row')(message, relation)) }}
{%- endmacro %}
{% macro duckdb__raise_error_for_each_row(message, relation) %}{{ return('select error(' ~ message ~ ')\n        from ' ~ relation) }}{% endmacro %}
{% macro spark__raise_error_for_each_row(message, relation) %}{{ return('select raise_error(' ~ message ~ ')\n        from ' ~ relation) }}{% endmacro %}

{#- The target's database, or none where the engine has none (Spark: a schema is a database). -#}
{% macro target_database() -%}
    {{ return(target.database if target.database is defined else none) }}
{%- endmacro %}
