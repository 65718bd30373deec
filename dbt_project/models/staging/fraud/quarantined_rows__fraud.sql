-- Every raw card-fraud row that broke a validation rule, with the rule, kept for inspection and repair.
-- Rebuilt from the append-only base tables on each run, so it always matches them exactly (idempotent).
{{ config(schema='quarantine', materialized='table') }}
{{ quarantined_rows('fraud', [
    'base_fraud__transactions', 'base_fraud__chargebacks', 'base_fraud__cards', 'base_fraud__merchants',
]) }}
