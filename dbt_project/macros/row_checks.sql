{#-
  A daily run's data tests, checked inside the build of the model whose rows they test (README, "What a
  daily run tests": "One check per model").

  dbt runs every data test as a node of its own, and on a daily run a node's fixed work (its context, its
  compiled template, its events, its connection) costs several times what a test reads in the rows the run
  wrote. So a daily run after a successful one on the same project files (the feature pipeline passes the
  var `fti_check_written_rows` with the written window), on DuckDB, leaves the row rules of incremental
  models, and of the views that read only such models (a staging view, a quarantine), out of dbt's
  selection (models_ml.features.row_checks), and the post-hook `check_written_rows()` of the model that
  writes those rows runs each left-out test in one query, before the model's transaction commits. The SQL
  of each test is the test's own (its generic test macro, on the same rows as the node would read:
  `tested_rows_subquery`); a test that finds rows fails the model, so its transaction rolls back and the
  day's rows are not published at all (the node would have run after they were committed), and the run
  fails naming each test and a failing row. The next run is a build after a failure, which runs every
  test as a node on whole tables.

  Which tests are left out is decided in one place, the pipeline; the post-hook checks exactly the tests on
  this model (or on such views) that are not selected in this invocation (none on Spark, or for a domain
  the pipeline keeps on test nodes), and refuses any it cannot run the way dbt would.
-#}
{% macro check_written_rows() -%}
    {%- if not execute or not var('fti_check_written_rows', false) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set checks = [] -%}
    {%- for test in left_out_tests(model) -%}
        {%- do checks.append((test, test_query(test))) -%}
    {%- endfor -%}
    {%- if checks -%}
        {%- do run_row_checks(checks) -%}
        {%- do log(model.name ~ ": checked in the model: " ~ checks | map(attribute=0) | map(attribute='name')
                   | join(', '), info=True) -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}

{#-
  The tests this invocation left out on `checked`, or on a view that reads `checked` and only models that
  check their rows (a staging view of one base model, a quarantine over its base models: each of them
  checks the view's tests after it appends, so every new row is checked). The pipeline leaves out exactly
  such tests (models_ml.features.row_checks); anything else left out is refused.
-#}
{% macro left_out_tests(checked) -%}
    {%- set tested = [checked.unique_id] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.config.materialized == 'view'
          and checked.unique_id in node.depends_on.nodes -%}
        {%- set unchecked = [] -%}
        {%- for parent in node.depends_on.nodes if not checks_its_rows(graph.nodes.get(parent)) -%}
            {%- do unchecked.append(parent) -%}
        {%- endfor -%}
        {%- if not unchecked -%}{%- do tested.append(node.unique_id) -%}{%- endif -%}
    {%- endfor -%}
    {%- set tests = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'test'
          and node.attached_node in tested and node.unique_id not in selected_resources -%}
        {%- if not node.test_metadata or node.depends_on.nodes != [node.attached_node]
              or node.config.fail_calc != 'count(*)' or node.config.warn_if != '!= 0'
              or node.config.error_if != '!= 0' or node.config.limit is not none -%}
            {{ exceptions.raise_compiler_error(checked.name ~ ": the build left out " ~ node.name ~ " to check it in"
                ~ " this model, but only a generic test of one model with dbt's default outcome can be; run the"
                ~ " build without the var fti_check_written_rows") }}
        {%- endif -%}
        {%- do tests.append(node) -%}
    {%- endfor -%}
    {{ return(tests) }}
{%- endmacro %}

{#- Whether `node` is an incremental model whose post-hook checks its rows (a source or none is not). -#}
{% macro checks_its_rows(node) -%}
    {%- if not node or node.resource_type != 'model' or node.config.materialized != 'incremental' -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for hook in node.config.get('post-hook', []) if 'check_written_rows(' in (hook.sql or '') -%}
        {{ return(true) }}
    {%- endfor -%}
    {{ return(false) }}
{%- endmacro %}

{#- The test's own query (what its node compiles to), on the rows its node would read. -#}
{% macro test_query(test) -%}
    {%- set tested = graph.nodes[test.attached_node] -%}
    {%- set relation = api.Relation.create(database=tested.database, schema=tested.schema,
                                           identifier=tested.alias) -%}
    {%- set arguments = {'model': tested_rows_subquery(relation, test.config.get('where'), test, model)} -%}
    {%- for name, value in test.test_metadata.kwargs.items() if name != 'model' -%}
        {%- do arguments.update({name: value}) -%}
    {%- endfor -%}
    {{ return(context['test_' ~ test.test_metadata.name](**arguments)) }}
{%- endmacro %}

{#-
  One query for all of a model's checks: the failures of each test (dbt's count(*) of its rows), then, for a
  test that has some, one of its rows for the message. Raising fails the model before it commits.
-#}
{% macro run_row_checks(checks) -%}
    {%- set counted -%}
        {%- for test, sql in checks %}
        select {{ loop.index0 }} as check_index, (select count(*) from ({{ sql }}) dbt_internal_test) as failures
        {%- if not loop.last %} union all{% endif %}
        {%- endfor %}
    {%- endset -%}
    {%- set failed = [] -%}
    {%- for row in run_query(counted).rows if row['failures'] > 0 -%}
        {%- set test, sql = checks[row['check_index']] -%}
        {%- set example = run_query('select * from (' ~ sql ~ ') dbt_internal_test limit 1') -%}
        {%- set first = {} -%}
        {%- for column in example.column_names -%}
            {%- do first.update({column: example.rows[0][column] | string}) -%}
        {%- endfor -%}
        {%- do failed.append(test.name ~ ' (' ~ row['failures'] ~ ' failing rows; e.g. ' ~ first ~ ')') -%}
    {%- endfor -%}
    {%- if failed -%}
        {{ exceptions.raise_database_error(model.name ~ ": the rows this run wrote fail " ~ failed | join(', ')
            ~ "; this run wrote nothing to it (its transaction rolled back). Fix the data or the model; the next run tests whole tables") }}
    {%- endif -%}
{%- endmacro %}
