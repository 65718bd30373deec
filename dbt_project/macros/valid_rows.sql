{#- The rows of a base model that broke no validation rule, without the validation bookkeeping columns. -#}
{% macro valid_rows(base_model, extra_exclude=[]) -%}
    select * exclude (rule_broken, record, batch_id{% for column in extra_exclude %}, {{ column }}{% endfor %})
    from {{ ref(base_model) }}
    where rule_broken is null
{%- endmacro %}
