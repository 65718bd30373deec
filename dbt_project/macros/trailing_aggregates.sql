{#-
  Trailing aggregates over `relation`, which must hold one row per partition per moment (like a windowed
  model's `per_moment`, grouped by both: the join form groups by them): a select of the partition columns,
  `time_column`, one column per entry [name, function, column, length] of `aggregates` (`function` of `column` over the half-open window
  (t - length, t] of the row's partition: `trailing_window`), and the `carry` columns as they are.
  `function` is sum, count, min or max: a window's value is then that aggregate of the rows in its frame.

  As window functions on a full refresh and on Spark. An incremental run on DuckDB computes only the rows
  it outputs (time from `recompute_from_at` on, macros/windowed_incremental.sql) by joining each to the
  rows of its partition in its widest window, and aggregating each window's rows with a filter on the
  same bounds: the same rows (folded look-back rows included) and the same values, with no window
  operator, whose cost is per input row and per aggregate however few rows are output (a fraud day:
  72,000 card rows in, 17,500 out). A null partition key is a partition, as in a window. The join's outer
  bound is the earliest of the windows' starts (computed per row, so calendar lengths compare exactly).
  Every length here must be among the `windows` the model gives windowed_incremental_scope, which folds
  look-back rows by those edges: pass it `window_lengths(aggregates)` of the same list.
  The join reads each output row's look-back rows, so it pays where an entity has few rows a day (cards,
  merchants: a fraud day's card windows, 0.28 s of window operator, take 0.08 s as a join); for a few
  busy entities windows are cheaper, and the flights delay statistics keep them (the 16 carriers' model
  took 0.10-0.16 s by window, 0.22-0.25 s by join, paired builds of one day).
-#}
{% macro trailing_aggregates(relation, partition_by, time_column, aggregates, carry=[]) -%}
    {%- for name, function, column, length in aggregates -%}
        {%- if function not in ('sum', 'count', 'min', 'max') -%}
            {{ exceptions.raise_compiler_error("trailing_aggregates: " ~ name ~ " uses " ~ function
               ~ "; use sum, count, min or max (and derive means and shares from them)") }}
        {%- endif -%}
    {%- endfor -%}
    {%- if is_incremental() and target.type == 'duckdb' -%}
        {{ trailing_aggregates_by_join(relation, partition_by, time_column, aggregates, carry) }}
    {%- else -%}
        {{ trailing_aggregates_by_window(relation, partition_by, time_column, aggregates, carry) }}
    {%- endif -%}
{%- endmacro %}

{#- The distinct window lengths of `aggregates`, in order of first use: the `windows` of the model's scope. -#}
{% macro window_lengths(aggregates) -%}
    {%- set lengths = [] -%}
    {%- for aggregate in aggregates -%}
        {%- if aggregate[3] not in lengths -%}{%- do lengths.append(aggregate[3]) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(lengths) }}
{%- endmacro %}

{% macro trailing_aggregates_by_window(relation, partition_by, time_column, aggregates, carry) -%}
    {%- set lengths = window_lengths(aggregates) -%}
    {%- set columns = partition_by + [time_column] -%}
    {%- for name, function, column, length in aggregates -%}
        {%- do columns.append(function ~ '(' ~ column ~ ') over w' ~ lengths.index(length) ~ ' as ' ~ name) -%}
    {%- endfor %}
    select
        {{ (columns + carry) | join(',\n        ') }}
    from {{ relation }}
    window
        {%- for length in lengths %}
        w{{ loop.index0 }} as {{ trailing_window(partition_by | join(', '), length, time_column) }}{{ "," if not loop.last }}
        {%- endfor %}
{% endmacro %}

{% macro trailing_aggregates_by_join(relation, partition_by, time_column, aggregates, carry) -%}
    {%- set columns = [] -%}
    {%- for column in partition_by + [time_column] -%}
        {%- do columns.append('output_row.' ~ column) -%}
    {%- endfor -%}
    {%- set keys = columns[:] -%}
    {%- for name, function, column, length in aggregates -%}
        {%- do columns.append(function ~ '(look_back.' ~ column ~ ') filter (where look_back.' ~ time_column
                              ~ ' > output_row.' ~ time_column ~ " - interval '" ~ length ~ "') as " ~ name) -%}
    {%- endfor -%}
    {%- for column in carry -%}
        {%- do columns.append('any_value(output_row.' ~ column ~ ') as ' ~ column) -%}
    {%- endfor %}
    select
        {{ columns | join(',\n        ') }}
    from {{ relation }} as output_row
    inner join {{ relation }} as look_back
        on look_back.{{ time_column }} <= output_row.{{ time_column }}
        and look_back.{{ time_column }} > least(
            {%- for aggregate in aggregates %}output_row.{{ time_column }} - interval '{{ aggregate[3] }}'{{ ", " if not loop.last }}{% endfor %})
        {%- for column in partition_by %}
        and look_back.{{ column }} is not distinct from output_row.{{ column }}
        {%- endfor %}
    where output_row.{{ time_column }} >= (select recompute_from_at from recompute_from)
    group by {{ keys | join(', ') }}
{% endmacro %}
