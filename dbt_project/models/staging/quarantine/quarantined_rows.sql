-- Every raw row that broke a validation rule, with the rule, kept for inspection and repair. Rebuilt from
-- the append-only raw tables on each run, so it always matches them exactly (idempotent).
{%- set bases = [
    ('flights', 'base_nycflights__flights'),
    ('weather', 'base_nycflights__weather'),
    ('planes', 'base_nycflights__planes'),
    ('airlines', 'base_nycflights__airlines'),
    ('airports', 'base_nycflights__airports'),
] %}
with

{% for source_table, base in bases %}
{{ source_table }}_broken as (
    select
        'nycflights.{{ source_table }}' as source_table,
        rule_broken,
        batch_id,
        loaded_at,
        record
    from {{ ref(base) }}
    where rule_broken is not null
),
{% endfor %}

final as (
    {% for source_table, base in bases %}
    select * from {{ source_table }}_broken
    {{ "union all" if not loop.last }}
    {% endfor %}
)

select * from final
