{#-
  Exact incremental runs for models with trailing windows over an event time.

  Rows loaded after this table's watermark (max loaded_at) change every output row from their earliest
  event time onward, because their windows reach forward. So the model recomputes those output rows
  (`in_recompute_range`) from input rows reaching back the widest window before it (`in_scope`), and the
  incremental strategy replaces them: delete+insert on DuckDB; on Spark, where tables are Parquet files
  and rows cannot be deleted, insert_overwrite of whole event-day partitions (`event_date_partition`), so
  there the recomputed range starts at the UTC midnight before that earliest event time. On a full
  refresh, everything is in scope.

  Usage, inside a `with`:  {{ windowed_incremental_scope('weather', 'observed_at', '3 hours') }}
  defines the CTEs `recompute_from` (incremental only) and `in_scope`; the final select lists
  `{{ event_date_partition('<event time>') }}` among its columns and ends in `{{ in_recompute_range(...) }}`.
-#}
{% macro windowed_incremental_scope(input_cte, time_column, lookback) -%}
    {{ return(adapter.dispatch('windowed_incremental_scope')(input_cte, time_column, lookback)) }}
{%- endmacro %}

{% macro duckdb__windowed_incremental_scope(input_cte, time_column, lookback) -%}
{% if is_incremental() %}
recompute_from as (
    select min({{ time_column }}) as recompute_from_at
    from {{ input_cte }}
    where loaded_at > (select coalesce(max(loaded_at), '-infinity'::timestamptz) from {{ this }})
),

in_scope as (
    select *
    from {{ input_cte }}
    where {{ time_column }} >= (select recompute_from_at from recompute_from) - interval '{{ lookback }}'
),
{% else %}
in_scope as (
    select * from {{ input_cte }}
),
{% endif %}
{%- endmacro %}

{#-
  On Spark the model is written with insert_overwrite of its event-day partitions (set here, so no windowed
  model can be configured otherwise). The watermark is read before the statement runs and written in as a
  literal: the statement overwrites this table, and Spark refuses to read a table it overwrites.
-#}
{% macro spark__windowed_incremental_scope(input_cte, time_column, lookback) -%}
{{ config(incremental_strategy='insert_overwrite', partition_by=['event_date'], file_format='parquet') }}
{% if is_incremental() %}
recompute_from as (
    select date_trunc('day', min({{ time_column }})) as recompute_from_at
    from {{ input_cte }}
    where loaded_at > {{ spark_watermark(this) }}
),

in_scope as (
    select *
    from {{ input_cte }}
    where {{ time_column }} >= (select recompute_from_at from recompute_from) - interval '{{ lookback }}'
),
{% else %}
in_scope as (
    select * from {{ input_cte }}
),
{% endif %}
{%- endmacro %}

{#- Keeps only the output rows an incremental run recomputes (no filter on a full refresh). -#}
{% macro in_recompute_range(time_column) -%}
{% if is_incremental() %}
    where {{ time_column }} >= (select recompute_from_at from recompute_from)
{% endif %}
{%- endmacro %}

{#-
  The storage partition column of a windowed model, for its final select list: on Spark `event_date`, the
  UTC day of the event time (the unit insert_overwrite replaces), declared in no contract (the contract
  macros in spark_contracts.sql add it); nothing on DuckDB.
-#}
{% macro event_date_partition(time_column) -%}
    {{ return(adapter.dispatch('event_date_partition')(time_column)) }}
{%- endmacro %}
{% macro default__event_date_partition(time_column) %}{{ return('') }}{% endmacro %}
{% macro spark__event_date_partition(time_column) %}{{ return('to_date(' ~ time_column ~ ') as event_date,') }}{% endmacro %}

{#- max(loaded_at) of `relation` as a timestamp literal (the minimum instant when it is empty). -#}
{% macro spark_watermark(relation) -%}
    {%- if not execute -%}{{ return(timestamp_minus_infinity()) }}{%- endif -%}
    {%- set micros = run_query('select unix_micros(max(loaded_at)) from ' ~ relation).columns[0].values()[0] -%}
    {%- if micros is none -%}{{ return(timestamp_minus_infinity()) }}{%- endif -%}
    {{ return('timestamp_micros(' ~ (micros | int) ~ ')') }}
{%- endmacro %}
