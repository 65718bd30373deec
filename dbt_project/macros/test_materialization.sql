{#-
  dbt's test materialization, except that failures are stored only for a test that found some.

  dbt's own stores every test's rows (`store_failures`), passing or not: two catalog changes per test (drop
  the old relation, create the new one), each a commit of its own, on every run. Here the test's query
  runs first; only a test that fails or warns then stores its failing rows, as a view in `audit` (what the
  pipeline shows when a build fails: models_ml/features/dbt_runner.py), and a test that passes drops what an
  earlier failure stored, so whatever `audit` holds is the failure of the test's latest run. What a test
  decides (failures, warn, error) is the same query dbt runs.
-#}
{%- materialization test, default -%}

  {% set relations = [] %}
  {% set limit = config.get('limit') %}
  {% set sql_header = config.get('sql_header') if flags.REQUIRE_SQL_HEADER_IN_TEST_CONFIGS else none %}
  {% set fail_calc = config.get('fail_calc') %}
  {% set warn_if = config.get('warn_if') %}
  {% set error_if = config.get('error_if') %}

  {% set sql_with_limit %}
    {{ get_limit_subquery_sql(sql, limit) }}
  {% endset %}

  {#- the test's query is one read: no transaction statements around it (dbt would add a BEGIN and a COMMIT) -#}
  {% call statement('main', fetch_result=True, auto_begin=False) -%}
    {% if sql_header %}{{ sql_header }}{% endif %}
    {{ get_test_sql(sql_with_limit, fail_calc, warn_if, error_if, limit=none) }}
  {%- endcall %}

  {% if should_store_failures() %}
    {% set store_failures_as = config.get('store_failures_as') or 'table' %}
    {% if store_failures_as not in ['table', 'view'] %}
      {{ exceptions.raise_compiler_error(
          "'" ~ store_failures_as ~ "' is not a valid value for `store_failures_as`. "
          "Accepted values are: ['ephemeral', 'table', 'view']"
      ) }}
    {% endif %}
    {% set old_relation = adapter.get_relation(database=database, schema=schema, identifier=model['alias']) %}
    {% if old_relation %}
      {% do adapter.drop_relation(old_relation) %}
    {% endif %}
    {% set outcome = load_result('main')['table'].rows[0] %}
    {% set stores = outcome['should_warn'] or outcome['should_error'] %}
    {% if stores %}
      {% set target_relation = api.Relation.create(
          identifier=model['alias'], schema=schema, database=database, type=store_failures_as) %}
      {% call statement(auto_begin=True) %}
        {% if sql_header %}{{ sql_header }}{% endif %}
        {{ get_create_sql(target_relation, sql_with_limit) }}
      {% endcall %}
      {% do relations.append(target_relation) %}
    {% endif %}
    {% if old_relation or stores %}{{ adapter.commit() }}{% endif %}{# a drop or a create began a transaction #}
  {% endif %}

  {{ return({'relations': relations}) }}

{%- endmaterialization -%}
