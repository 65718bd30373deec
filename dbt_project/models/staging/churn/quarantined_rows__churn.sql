-- Every raw churn row that broke a validation rule, with the rule, kept for inspection and repair.
-- Rebuilt from the append-only base tables on each run, so it always matches them exactly (idempotent).
{{ config(schema='quarantine', materialized='table') }}
{{ quarantined_rows('churn', [
    'base_churn__customers', 'base_churn__usage', 'base_churn__tickets', 'base_churn__payments',
    'base_churn__cancellations',
]) }}
