{#-
  `quarantined_rows(source_name, base_models)`: one domain's quarantine, every raw row that broke a validation
  rule in one of `base_models` (each a base model reading one table of the source `source_name`, with the
  columns `rule_broken`, `batch_id`, `loaded_at`, `record`).

  The list is named in the model (dbt records a model's dependencies when it parses, before the graph exists),
  and checked against the graph when the model runs: a base model of the source that the list leaves out is a
  compile error naming it, so a new table's broken rows cannot be silently missed. A base model not built in
  this warehouse when the view is created (a build that selected only some models) is left out of the view
  until it is next created, by the next build of the whole domain (a domain's selection builds its base
  models before its quarantine).
-#}
{% macro quarantined_rows(source_name, base_models) -%}
    {%- if execute -%}
        {%- set expected = [] -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model' and node.fqn[-2] == 'base'
                   and node.sources | selectattr(0, 'equalto', source_name) | list -%}
                {%- do expected.append(node.name) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set missing = expected | reject('in', base_models) | list -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error("quarantine of source " ~ source_name ~ " leaves out base model(s) "
               ~ missing | join(', ') ~ ": add them to the list in " ~ model.name) }}
        {%- endif -%}
    {%- endif -%}
    {%- set parts = [] -%}
    {%- for base in base_models -%}
        {%- set relation = ref(base) -%}
        {%- if not execute or load_relation(relation) is not none -%}
            {%- set node = graph.nodes.values() | selectattr('name', 'equalto', base) | first if execute else none -%}
            {%- set table = node.sources[0][1] if node and node.sources else base -%}
            {%- do parts.append((table, relation)) -%}
        {%- endif -%}
    {%- endfor %}
    {%- if parts %}
    {%- for table, relation in parts %}
    select
        '{{ source_name }}.{{ table }}' as source_table,
        rule_broken,
        batch_id,
        loaded_at,
        record
    from {{ relation }}
    where rule_broken is not null
    {{ "union all" if not loop.last }}
    {%- endfor %}
    {%- else %}
    select {{ typed_null('varchar') }} as source_table, {{ typed_null('varchar') }} as rule_broken,
           {{ typed_null('varchar') }} as batch_id, {{ typed_null('timestamptz') }} as loaded_at,
           {{ typed_null('json') }} as record
    where false
    {%- endif %}
{%- endmacro %}
