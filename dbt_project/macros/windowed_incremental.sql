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
  (the input: a CTE's name or a relation) defines the CTEs `recompute_from` (incremental only) and
  `in_scope`; the final select lists
  `{{ event_date_partition('<event time>') }}` among its columns and ends in `{{ in_recompute_range(...) }}`.

  `windows` (optional): the lengths of every trailing window the model computes over `in_scope`, when the
  model only sums, counts and takes maxima over them (decomposable aggregates) and groups `in_scope` by its
  time column before windowing. Then, on DuckDB, an incremental run folds the look-back rows that cannot
  tell its output rows apart: with R the first and T the last event time recomputed, a row before R at time
  s lies inside the window (t - N, t] of every output row t in [R, T] when s > T - N, and outside all of
  them when s < R - N; only rows in [R - N, T - N], for some window N, fall on a frame's edge. Every other
  look-back row gets, as its time, one microsecond after the greatest T - N below it: a time in the same gap
  between edges (no edge lies between the two), so it is inside or outside each window of each output row
  exactly when the row itself is, and earlier than R, so it is never output. Grouping by time then sums the
  rows of a gap into one per entity: a daily run windows a few days of rows, not the whole look-back, and
  writes what a full refresh writes. A recomputed span longer than a window leaves no gap for it (nothing is
  folded there).

  `partition_by` (optional): the columns every window of the model partitions by, when each output row
  comes from an input row of its own partition (one row per entity per moment). Then an incremental run
  on DuckDB also leaves out the look-back rows of every partition with no input row in the recomputed
  range: they only enter windows of their own partition, which outputs nothing there. A daily fraud run
  windows the cards that transacted that day, about half of those of the last 30 days.
-#}
{% macro windowed_incremental_scope(input_cte, time_column, lookback, windows=none, partition_by=none) -%}
    {{ return(adapter.dispatch('windowed_incremental_scope')(input_cte, time_column, lookback, windows,
                                                             partition_by)) }}
{%- endmacro %}

{% macro duckdb__windowed_incremental_scope(input_cte, time_column, lookback, windows, partition_by) -%}
{% if is_incremental() %}
recompute_from as (
    select
        {%- if windows %}
        (select max({{ time_column }}) from {{ input_cte }}) as recompute_to_at,
        {%- endif %}
        min({{ time_column }}) as recompute_from_at
    from {{ input_cte }}
    where loaded_at > (select coalesce(max(loaded_at), '-infinity'::timestamptz) from {{ this }})
),
{%- if windows %}

in_scope as (
    select
        * replace (
            case
                when {{ time_column }} >= (select recompute_from_at from recompute_from)
                {%- for window in windows %}
                    or {{ time_column }} between (select recompute_from_at from recompute_from) - interval '{{ window }}'
                                             and (select recompute_to_at from recompute_from) - interval '{{ window }}'
                {%- endfor %}
                    then {{ time_column }}
                else coalesce(greatest(
                    {%- for window in windows %}
                    case when {{ time_column }} > (select recompute_to_at from recompute_from) - interval '{{ window }}'
                         then (select recompute_to_at from recompute_from) - interval '{{ window }}' end
                    {%- if not loop.last %},{% endif %}
                    {%- endfor %}
                ) + interval '1 microsecond', {{ time_column }})
            end as {{ time_column }}
        )
    from {{ input_cte }}
    where {{ time_column }} >= (select recompute_from_at from recompute_from) - interval '{{ lookback }}'
    {{- recomputed_partitions(input_cte, time_column, partition_by) }}
),
{%- else %}

in_scope as (
    select *
    from {{ input_cte }}
    where {{ time_column }} >= (select recompute_from_at from recompute_from) - interval '{{ lookback }}'
    {{- recomputed_partitions(input_cte, time_column, partition_by) }}
),
{%- endif %}
{% else %}
in_scope as (
    select * from {{ input_cte }}
),
{% endif %}
{%- endmacro %}

{#-
  On Spark the model is written with insert_overwrite of its event-day partitions (set here, so no windowed
  model can be configured otherwise). The watermark is read before the statement runs and written in as a
  literal: the statement overwrites this table, and Spark refuses to read a table it overwrites. Spark
  recomputes whole days, folds no look-back rows and leaves out no partition (`windows` and
  `partition_by` are not used here).
-#}
{% macro spark__windowed_incremental_scope(input_cte, time_column, lookback, windows, partition_by) -%}
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

{#-
  `and`: the input row's partition has a row in the recomputed range (nothing without `partition_by`). A
  row with a null key is always kept: null keys form one partition of a window, and `in` never matches one.
  (`in` over the keys, not a correlated `exists`, is what DuckDB runs as one hash semi-join.)
-#}
{% macro recomputed_partitions(input_cte, time_column, partition_by) -%}
{%- if partition_by %}
{%- set key = partition_by[0] if partition_by | length == 1 else 'row(' ~ partition_by | join(', ') ~ ')' %}
      and ({{ key }} in (
            select {{ key }} from {{ input_cte }}
            where {{ time_column }} >= (select recompute_from_at from recompute_from)
          )
          {%- for column in partition_by %} or {{ column }} is null{% endfor %})
{%- endif %}
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
