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

  A model that only appends rows (a label) can declare `meta.fti.written_after: [columns]`: every row a run
  writes has, in at least one of those columns, a value above the column's maximum before the run (the
  fraud label: its transaction matured after the last run's data clock, or was loaded after the last
  run). The pre-hook notes each column's maximum; its tests read the rows above one of them.

  Staging views that declare `meta.fti.rows_of` are windowed the same way through their base models: each
  base model's pre-hook notes its max(loaded_at) before it appends, and the view's tests read the rows
  loaded after it.

  Uniqueness tests whose columns include the event time read the window: rows outside it did not change,
  and their event time is earlier than any row inside it, so they cannot collide with one. A uniqueness
  test on other columns (one row per entity; a view's key) reads the rows whose key a written row has: a
  key no written row has is held only by rows that did not change (README, "Uniqueness still holds for
  the whole table").
-#}

{#-
  `created_time`: the column the watermark is the max of; by default a feature group's meta.fti created_time,
  or each column of meta.fti written_after (one watermark per column, keyed `<schema>.<table>.<column>`).
-#}
{% macro record_test_watermark(created_time=none) -%}
    {%- set fti = (model.config.get('meta') or {}).get('fti') or {} -%}
    {%- set created_time = created_time or (fti.get('created_time') if fti.get('event_time') else none) -%}
    {%- if created_time and fti.get('written_after') -%}
        {{ exceptions.raise_compiler_error(model.name ~ ": meta.fti.written_after is for models without an event"
            ~ " and created time (a feature group's tests are windowed by those); remove one of them") }}
    {%- endif -%}
    {%- set watermarks = [] -%}
    {%- if created_time -%}
        {%- do watermarks.append((watermark_key(this), created_time)) -%}
    {%- else -%}
        {%- for column in fti.get('written_after') or [] -%}
            {%- do watermarks.append((watermark_key(this, column), column)) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if is_incremental() and watermarks -%}
    {{ adapter.dispatch('record_test_watermark')(watermarks) }}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__record_test_watermark(watermarks) -%}
    delete from {{ test_watermarks_relation() }}
    where relation in ({% for key, _ in watermarks %}'{{ key }}'{% if not loop.last %}, {% endif %}{% endfor %});
    {{ insert_test_watermarks(watermarks) }}
{%- endmacro %}

{#-
  Parquet tables take no delete: on Spark the table keeps every run's row (one per group and incremental
  run), which changes nothing, since the tests read the row of their own invocation.
-#}
{% macro spark__record_test_watermark(watermarks) -%}
    {{ insert_test_watermarks(watermarks) }}
{%- endmacro %}

{#- One statement (Spark runs one per hook): a row per (key, column) of `watermarks`. -#}
{% macro insert_test_watermarks(watermarks) -%}
    insert into {{ test_watermarks_relation() }}
    {%- for key, column in watermarks %}
    select '{{ key }}', '{{ invocation_id }}', max({{ column }}) from {{ this }}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- The key of a relation's watermark in audit.test_watermarks (with the column, for written_after). -#}
{% macro watermark_key(relation, column=none) -%}
    {{ relation.schema }}.{{ relation.identifier }}{% if column %}.{{ column }}{% endif %}
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
  the `model` of a test's context; the rows are those of `tested_rows` (get_where_subquery's alias).

  Row rules (not_null, accepted_values, expression_is_true, ...) read the rows the run wrote. A uniqueness
  test whose columns include the event time reads the same window (README, "Uniqueness still holds for the
  whole table"). Any other uniqueness test (one row per entity; a view's key) reads every row whose key is
  the key of a row the run wrote: a duplicate the run made shares its key with a written row, and a key
  no written row has kept the rows it had after the last run, which passed this test (written_key_rows).
-#}
{% macro written_window_condition(relation, test_node, checking=none) -%}
    {%- if not var('fti_test_written_window', false) or not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(test_node.get('attached_node')) if test_node.get('attached_node') else none -%}
    {%- if not tested -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set target_relation = api.Relation.create(database=tested.database, schema=tested.schema,
                                                  identifier=tested.alias) -%}
    {%- set written = written_rows(tested, target_relation, checking) -%}
    {%- if not written -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set metadata = test_node.get('test_metadata') or {} -%}
    {%- set kwargs = metadata.get('kwargs') or {} -%}
    {%- set key = none -%}
    {%- if metadata.get('name') == 'unique' -%}
        {%- set key = [kwargs.get('column_name')] -%}
    {%- elif metadata.get('name') == 'unique_combination_of_columns' -%}
        {%- set key = kwargs.get('combination_of_columns') or [] -%}
    {%- endif -%}
    {%- if key is not none and written.event_time not in key -%}
        {{ return(written_key_rows(target_relation, key, written)) }}
    {%- endif -%}
    {{ return(written.condition | replace('__rows__', 'tested_rows')) }}
{%- endmacro %}

{#-
  Which rows of `tested` (at `target_relation`) this run wrote: {'event_time': its event time column or
  none, 'condition': a condition on the rows of the alias `__rows__`}, or none for a relation of neither
  kind below (its tests read every row). When the invocation recorded
  no watermark (a full refresh, a first build, a model it did not build), every row counts as written.
  - A feature group (meta.fti event_time, created_time): every row from the earliest event time of a row
    created after its watermark on, and every row with a null event or created time (the window cannot
    place it, and a rule on those columns must see it).
  - A model that declares `meta.fti.written_after: [columns]` (it only appends, and each row it writes is
    above a column's pre-run maximum in one of them): the rows above a recorded maximum, or null there.
  - A view that declares `meta.fti.rows_of: <base model>` (or a list): it filters and projects, row by row,
    the rows of that one append-only base model (of each of those, which are every model it reads) and keeps
    their `loaded_at` (the staging views of `valid_rows`; a domain's quarantine). Its written rows are those
    loaded after the base model's watermark (the earliest of those this invocation builds; one it does not
    build appends nothing), which are the rows the base model's build appended
    (macros/incremental_rules.sql); base rows never change. Checked inside the build of one
    of them (`checking`: macros/row_checks.sql), they are the rows loaded after that one's watermark,
    which hold every row that build appended. An incremental base
    build never appends a null load time (its filter `_loaded_at > watermark` drops it; a first build
    runs without the window: models_ml.features.pipeline.build_scope), so the condition is a plain
    comparison, which DuckDB answers from the row groups' min/max alone.
-#}
{% macro written_rows(tested, target_relation, checking=none) -%}
    {%- set fti = (tested.get('config', {}).get('meta') or {}).get('fti') or {} -%}
    {%- if fti.get('event_time') and fti.get('created_time') -%}
        {%- set since -%}
        coalesce((
            select min(new_rows.{{ fti['event_time'] }}) from {{ target_relation }} as new_rows
            where new_rows.{{ fti['created_time'] }} > {{ recorded_watermark(target_relation) }}
        ), {{ timestamp_infinity() }})
        {%- endset -%}
        {%- set rows = '__rows__.' -%}
        {{ return({'event_time': fti['event_time'],
                   'condition': '(' ~ rows ~ fti['event_time'] ~ ' >= ' ~ since ~ ' or ' ~ rows ~ fti['event_time']
                                ~ ' is null or ' ~ rows ~ fti['created_time'] ~ ' is null)'}) }}
    {%- endif -%}
    {%- if fti.get('written_after') -%}
        {%- set above = [] -%}
        {%- for column in fti['written_after'] -%}
            {%- do above.append('__rows__.' ~ column ~ ' > ' ~ recorded_watermark(target_relation, column)
                                ~ ' or __rows__.' ~ column ~ ' is null') -%}
        {%- endfor -%}
        {{ return({'event_time': none, 'condition': '(' ~ above | join(' or ') ~ ')'}) }}
    {%- endif -%}
    {%- if not fti.get('rows_of') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set bases = [fti['rows_of']] if fti['rows_of'] is string else fti['rows_of'] -%}
    {%- set appended = [] -%}
    {%- for parent in (tested.get('depends_on') or {}).get('nodes') or [] -%}
        {%- set node = graph.nodes.get(parent) -%}
        {%- if node and node.get('name') in bases
              and node.get('config', {}).get('incremental_strategy') == 'append' -%}
            {%- do appended.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if tested.get('config', {}).get('materialized') != 'view' or appended | length != bases | length
          or appended | length != ((tested.get('depends_on') or {}).get('nodes') or []) | length -%}
        {{ exceptions.raise_compiler_error(tested.name ~ ": meta.fti.rows_of (" ~ bases | join(', ') ~ ") must name"
            ~ " every model the view reads, each an append-only incremental model; fix rows_of or remove it") }}
    {%- endif -%}
    {%- set watermarks = [] -%}
    {#- a base model this invocation does not build appends nothing: its rows passed the last run's tests -#}
    {%- set checking_id = checking.unique_id if checking is not none else none -%}
    {%- for node in appended if (node.unique_id == checking_id if checking_id
                                 else node.unique_id in selected_resources) -%}
        {%- do watermarks.append(recorded_watermark(api.Relation.create(
            database=node.database, schema=node.schema, identifier=node.alias))) -%}
    {%- endfor -%}
    {%- set since = watermarks[0] if watermarks | length == 1
                    else 'least(' ~ watermarks | join(', ') ~ ')' if watermarks else timestamp_minus_infinity() -%}
    {{ return({'event_time': none, 'condition': '(__rows__.loaded_at > ' ~ since ~ ')'}) }}
{%- endmacro %}

{#- The watermark this invocation recorded for `watermarked`, or minus infinity (every row is newer). -#}
{% macro recorded_watermark(watermarked, column=none) -%}
    coalesce((
        select max(watermark) from {{ test_watermarks_relation() }}
        where relation = '{{ watermark_key(watermarked, column) }}' and invocation_id = '{{ invocation_id }}'
    ), {{ timestamp_minus_infinity() }})
{%- endmacro %}

{#- The tested rows whose `key` is the key of a row this run wrote (an IN subquery: a semi-join in DuckDB and Spark). -#}
{#- A key with a null is never `in` anything, and unique_combination_of_columns groups nulls: such rows are read. -#}
{% macro written_key_rows(target_relation, key, written) -%}
    (
        ({{ key | join(', ') }}) in (
            select {{ key | join(', ') }} from {{ target_relation }} as written_rows
            where {{ written.condition | replace('__rows__', 'written_rows') }}
        )
        {%- for column in key %}
        or tested_rows.{{ column }} is null
        {%- endfor %}
    )
{%- endmacro %}

{#-
  dbt wraps the relation of every generic test in this macro; besides a test's own `where`, it keeps only
  the rows an incremental run wrote (`written_window_condition`).
-#}
{% macro get_where_subquery(relation) -%}
    {%- do return(tested_rows_subquery(relation, config.get('where', ''), model)) -%}
{%- endmacro %}

{#- The rows of `relation` the test `test_node` reads: those its `where` keeps, of the rows the run wrote. -#}
{% macro tested_rows_subquery(relation, where, test_node, checking=none) -%}
    {%- set conditions = [] -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- set window = written_window_condition(relation, test_node, checking) -%}
    {%- if window -%}{%- do conditions.append('(' ~ window ~ ')') -%}{%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} as tested_rows where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
