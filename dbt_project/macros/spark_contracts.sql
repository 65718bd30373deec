{#-
  Enforced contracts on Spark. The YAML declares DuckDB's type names (the catalog and the DuckDB build read
  them), so on Spark each declared type is read as Spark's own name (engine_data_type), and a windowed
  group's storage partition column (`event_date`, see windowed_incremental.sql) joins the declared columns:
  it is how the table is stored there, not a feature.
-#}

{#- The contract's columns on Spark: the declared ones, then the model's partition columns (dates). -#}
{% macro spark__get_empty_schema_sql(columns) -%}
    {%- set declared = [] -%}
    {%- for name in columns -%}
        {%- set column = columns[name] -%}
        {%- set quoted = adapter.quote(column['name']) if column.get('quote') else column['name'] -%}
        {%- if column.get('data_type') is none -%}
            {{ exceptions.column_type_missing(column_names=[column['name']]) }}
        {%- endif -%}
        {%- do declared.append('cast(null as ' ~ engine_data_type(column['data_type']) ~ ') as ' ~ quoted) -%}
    {%- endfor -%}
    {%- for partition in spark_partition_columns_outside(columns) -%}
        {%- do declared.append('cast(null as date) as ' ~ partition) -%}
    {%- endfor %}
    select {{ declared | join(', ') }}
{%- endmacro %}

{#- The columns a contracted Spark table is created with, in that order: the declared ones, then its partitions. -#}
{% macro spark__get_column_names() -%}
    {%- set names = [] -%}
    {%- for name in model['columns'] -%}
        {%- set column = model['columns'][name] -%}
        {%- do names.append(adapter.quote(column['name']) if column.get('quote') else column['name']) -%}
    {%- endfor -%}
    {{ (names + spark_partition_columns_outside(model['columns'])) | join(', ') }}
{%- endmacro %}

{#- The model's partition_by columns that its YAML does not declare. -#}
{% macro spark_partition_columns_outside(columns) -%}
    {%- set partition_by = config.get('partition_by') or [] -%}
    {%- set partition_by = [partition_by] if partition_by is string else partition_by -%}
    {{ return(partition_by | reject('in', columns | list) | list) }}
{%- endmacro %}
