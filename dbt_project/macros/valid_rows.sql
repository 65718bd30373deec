{#- The rows of a base model that broke no validation rule, without the validation bookkeeping columns. -#}
{% macro valid_rows(base_model, extra_exclude=[]) -%}
    select {{ star_except(['rule_broken', 'record', 'batch_id'] + extra_exclude) }}
    from {{ ref(base_model) }}
    where rule_broken is null
{%- endmacro %}
