{#-
  Data tests of an incremental run check the rows that run wrote, not the whole table (README, "Feature
  store": "What a daily run tests").

  Before an incremental feature group is built, `record_test_watermark` (a pre-hook of every model under
  models/features) notes the table's watermark, max(created time), in audit.test_watermarks for this dbt
  invocation: the same watermark the model's incremental SQL reads (macros/windowed_incremental.sql). The
  run rewrites the window from the earliest event time of the rows it derives from data loaded after the
  watermark; so a row whose created time is after the watermark starts the window, and every row from that
  event time on is tested. A full refresh records no watermark, so its tests read the whole table, as does
  every run without the var `fti_test_written_window: true` (the feature pipeline passes it only when the
  domain's previous run succeeded: a failed or killed run may have left rows no test passed).

  Uniqueness tests are windowed only when their columns include the event time: rows outside the window
  did not change, and their event time is earlier than any row inside it, so they cannot collide with one.
  A uniqueness test on other columns (one row per entity) reads the whole table.
-#}

{% macro record_test_watermark() -%}
    {%- set fti = (model.config.get('meta') or {}).get('fti') or {} -%}
    {%- if is_incremental() and fti.get('created_time') and fti.get('event_time') -%}
    {{ adapter.dispatch('record_test_watermark')(fti['created_time']) }}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__record_test_watermark(created_time) -%}
    delete from {{ test_watermarks_relation() }} where relation = '{{ this.schema }}.{{ this.identifier }}';
    insert into {{ test_watermarks_relation() }}
    select '{{ this.schema }}.{{ this.identifier }}', '{{ invocation_id }}', max({{ created_time }}) from {{ this }}
{%- endmacro %}

{#-
  Parquet tables take no delete: on Spark the table keeps every run's row (one per group and incremental
  run), which changes nothing, since the tests read the row of their own invocation.
-#}
{% macro spark__record_test_watermark(created_time) -%}
    insert into {{ test_watermarks_relation() }}
    select '{{ this.schema }}.{{ this.identifier }}', '{{ invocation_id }}', max({{ created_time }}) from {{ this }}
{%- endmacro %}

{% macro test_watermarks_relation() -%}
    {{ api.Relation.create(database=target_database(), schema='audit', identifier='test_watermarks') }}
{%- endmacro %}

{#- Run at the start of every dbt invocation (on-run-start): the table the pre-hook writes. -#}
{% macro create_test_watermarks() -%}
    {{ return(adapter.dispatch('create_test_watermarks')()) }}
{%- endmacro %}

{% macro duckdb__create_test_watermarks() -%}
    create schema if not exists audit;
    create table if not exists {{ test_watermarks_relation() }} (
        relation varchar, invocation_id varchar, watermark timestamptz
    )
{%- endmacro %}

{#- Spark runs one statement per call: the schema is made while the hook renders. -#}
{% macro spark__create_test_watermarks() -%}
    {%- if execute -%}{%- do run_query('create schema if not exists audit') -%}{%- endif -%}
    create table if not exists {{ test_watermarks_relation() }} (
        relation string, invocation_id string, watermark timestamp
    ) using parquet
{%- endmacro %}

{#-
  The condition a test's rows must meet to be tested, or none to test them all. `test_node` is the test, as
  the `model` of a test's context.
-#}
{% macro written_window_condition(relation, test_node) -%}
    {%- if not var('fti_test_written_window', false) or not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(test_node.get('attached_node')) if test_node.get('attached_node') else none -%}
    {%- set fti = ((tested or {}).get('config', {}).get('meta') or {}).get('fti') or {} -%}
    {%- set event_time, created_time = fti.get('event_time'), fti.get('created_time') -%}
    {%- if not tested or not event_time or not created_time -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set metadata = test_node.get('test_metadata') or {} -%}
    {%- set kwargs = metadata.get('kwargs') or {} -%}
    {%- if metadata.get('name') == 'unique' and kwargs.get('column_name') != event_time -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if metadata.get('name') == 'unique_combination_of_columns'
          and event_time not in (kwargs.get('combination_of_columns') or []) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set target_relation = api.Relation.create(database=tested.database, schema=tested.schema,
                                                  identifier=tested.alias) -%}
    {%- set condition -%}
    {{ event_time }} >= coalesce((
        select min(written.{{ event_time }}) from {{ target_relation }} as written
        where written.{{ created_time }} > coalesce((
            select max(watermark) from {{ test_watermarks_relation() }}
            where relation = '{{ tested.schema }}.{{ tested.alias }}' and invocation_id = '{{ invocation_id }}'
        ), {{ timestamp_minus_infinity() }})
    ), {{ timestamp_infinity() }})
    {%- endset -%}
    {{ return(condition) }}
{%- endmacro %}

{#-
  dbt wraps the relation of every generic test in this macro; besides a test's own `where`, it keeps only
  the rows an incremental run wrote (`written_window_condition`).
-#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- set window = written_window_condition(relation, model) -%}
    {%- if window -%}{%- do conditions.append('(' ~ window ~ ')') -%}{%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
