-- Every raw churn row that broke a validation rule, with the rule, kept for inspection and repair.
-- A view over the append-only base tables: it is always exactly their broken rows, and a run builds nothing
-- for it (a table rebuilt each run read every broken row's record again: its cost grew with the history).
-- Each row keeps its base row's loaded_at, so its tests read the rows its base models appended (rows_of).
{% set base_models = [
    'base_churn__customers', 'base_churn__usage', 'base_churn__tickets', 'base_churn__payments',
    'base_churn__cancellations',
] %}
{{ config(schema='quarantine', materialized='view', meta={'fti': {'rows_of': base_models}}) }}
{{ quarantined_rows('churn', base_models) }}
