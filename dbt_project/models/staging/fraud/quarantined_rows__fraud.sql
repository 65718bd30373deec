-- Every raw card-fraud row that broke a validation rule, with the rule, kept for inspection and repair.
-- A view over the append-only base tables: it is always exactly their broken rows, and a run builds nothing
-- for it (a table rebuilt each run read every broken row's record again: its cost grew with the history).
{{ config(schema='quarantine', materialized='view') }}
{{ quarantined_rows('fraud', [
    'base_fraud__transactions', 'base_fraud__chargebacks', 'base_fraud__cards', 'base_fraud__merchants',
]) }}
