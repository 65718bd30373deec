-- Every raw row that broke a validation rule, with the rule, kept for inspection and repair. Rebuilt from
-- the append-only raw tables on each run, so it always matches them exactly (idempotent).
-- A base model not built in this warehouse (an example whose pipeline never ran here, when a build selects
-- one example) has no broken rows to add; every base is still a dependency, so the lineage is complete.
{%- set all_bases = [
    ('nycflights', 'flights', 'base_nycflights__flights'),
    ('nycflights', 'weather', 'base_nycflights__weather'),
    ('nycflights', 'planes', 'base_nycflights__planes'),
    ('nycflights', 'airlines', 'base_nycflights__airlines'),
    ('nycflights', 'airports', 'base_nycflights__airports'),
    ('fraud', 'transactions', 'base_fraud__transactions'),
    ('fraud', 'chargebacks', 'base_fraud__chargebacks'),
    ('fraud', 'cards', 'base_fraud__cards'),
    ('fraud', 'merchants', 'base_fraud__merchants'),
] %}
{%- set bases = [] %}
{%- for source_name, source_table, base in all_bases %}
    {%- set relation = ref(base) %}
    {%- if not execute or load_relation(relation) is not none %}
        {%- do bases.append((source_name, source_table, base)) %}
    {%- endif %}
{%- endfor %}
with

{% for source_name, source_table, base in bases %}
{{ source_name }}_{{ source_table }}_broken as (
    select
        '{{ source_name }}.{{ source_table }}' as source_table,
        rule_broken,
        batch_id,
        loaded_at,
        record
    from {{ ref(base) }}
    where rule_broken is not null
),
{% endfor %}

final as (
    {% for source_name, source_table, base in bases %}
    select * from {{ source_name }}_{{ source_table }}_broken
    {{ "union all" if not loop.last }}
    {% endfor %}
)

select * from final
