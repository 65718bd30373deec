{#- Fails with the duplicated key combinations (the grain of a feature group is its entity + event time). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by all
having count(*) > 1
{% endtest %}
