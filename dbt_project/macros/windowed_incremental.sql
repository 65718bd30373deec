{#-
  Exact incremental runs for models with trailing windows over an event time.

  Rows loaded after this table's watermark (max loaded_at) change every output row from their earliest
  event time onward, because their windows reach forward. So the model recomputes those output rows
  (`in_recompute_range`) from input rows reaching back the widest window before it (`in_scope`), and the
  delete+insert strategy replaces them. On a full refresh, everything is in scope.

  Usage, inside a `with`:  {{ windowed_incremental_scope('weather', 'observed_at', '3 hours') }}
  defines the CTEs `recompute_from` (incremental only) and `in_scope`.
-#}
{% macro windowed_incremental_scope(input_cte, time_column, lookback) -%}
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

{#- Keeps only the output rows an incremental run recomputes (no filter on a full refresh). -#}
{% macro in_recompute_range(time_column) -%}
{% if is_incremental() %}
    where {{ time_column }} >= (select recompute_from_at from recompute_from)
{% endif %}
{%- endmacro %}
