-- Every raw flights-domain row that broke a validation rule, with the rule, kept for inspection and repair.
-- Rebuilt from the append-only base tables on each run, so it always matches them exactly (idempotent).
{{ config(schema='quarantine', materialized='table') }}
{{ quarantined_rows('nycflights', [
    'base_nycflights__flights', 'base_nycflights__weather', 'base_nycflights__planes',
    'base_nycflights__airlines', 'base_nycflights__airports', 'base_nycflights__schedule',
]) }}
