{#- Fails with the rows for which `expression` is false (NULL counts as passing, like SQL CHECK). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
