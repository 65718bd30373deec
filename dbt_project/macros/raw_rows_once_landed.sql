{#-
  `new_raw_rows(source_relation)` for a raw table that may not exist yet: until its example's loader has
  landed a first batch, it reads as zero rows with the columns (and types) its source YAML declares. So
  `dbt build` of the whole project works in a warehouse that holds only some of the examples' data, and the
  base model's column types do not depend on whether data has arrived.
-#}
{% macro new_raw_rows_once_landed(source_relation) -%}
    {%- set existing = load_relation(source_relation) if execute else source_relation -%}
    {%- if existing is none -%}
    {%- set matches = [] -%}
    {%- for node in graph.sources.values() -%}
        {%- if node.schema == source_relation.schema and (node.identifier or node.name) == source_relation.identifier -%}
            {%- do matches.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not matches or not matches[0].columns -%}
        {{ exceptions.raise_compiler_error("source " ~ source_relation ~ " is not landed and declares no columns") }}
    {%- endif %}
    select
        {%- for column in matches[0].columns.values() %}
        {{ typed_null(column.data_type) }} as {{ column.name }},
        {%- endfor %}
        {{ typed_null('timestamptz') }} as _loaded_at,
        {{ typed_null('varchar') }} as _batch_id
    where false
    {%- else -%}
    {{ new_raw_rows(source_relation) }}
    {%- endif -%}
{%- endmacro %}
