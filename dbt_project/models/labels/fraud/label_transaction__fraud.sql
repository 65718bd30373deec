-- The card-fraud target: was this transaction fraud? One row per transaction whose label is final.
--
-- Only fraud is ever reported (as a chargeback, days to weeks later); a transaction is legitimate when its
-- maturity window (`fraud_label_maturity_days` after the transaction) has passed without a chargeback.
-- Before that, "no chargeback yet" is not a label. So a transaction enters this table only once it is
-- MATURE: when the data's own clock, the latest transaction time landed, has passed its
-- `label_matures_at`. Its label is then final (a chargeback reported after the window does not count, by
-- definition), so rows are appended once and never change, and training on any time range never sees a
-- provisional "legitimate" or a sample biased toward the early-reported fraud. Fresh transactions are
-- scored online from their request, not from this table.
--
-- The spine time is the transaction time minus one microsecond: the point-in-time join (event_at <= spine
-- time) then sees the feature rows of transactions strictly before this one, which is exactly what the
-- online store holds when this transaction is scored (see fg_card__activity).
{%- set maturity = 'to_hours(' ~ (24 * var('fraud_label_maturity_days')) ~ ')' %}
with

transactions as (
    select * from {{ ref('stg_fraud__transactions') }}
),

chargebacks as (
    select * from {{ ref('stg_fraud__chargebacks') }}
),

-- Read from the view, not from the `transactions` CTE: a CTE read twice is materialized whole (2M rows) first.
data_clock as (
    select max(transaction_at) as clock_at from {{ ref('stg_fraud__transactions') }}
),
{% if is_incremental() %}

-- A transaction an earlier run did not label had not matured by that run's clock, which had passed every
-- label's maturity, or was loaded after that run, so after every label's load time: only such
-- transactions are looked up among the labels.
labels_so_far as (
    select
        coalesce(max(label_matures_at), {{ timestamp_minus_infinity() }}) as matured_through_at,
        coalesce(max(loaded_at), {{ timestamp_minus_infinity() }}) as loaded_through_at
    from {{ this }}
),
{% endif %}

-- Scalar bounds on the transaction time itself, not a cross join: a plain filter on the scan. Incrementally,
-- the two ways a transaction can be new to the labels are read apart (disjoint: the second lies at or
-- below the first's lower bound), each from the view with bounds on one column, the transaction time or
-- the load time. One filter with an OR between them would read every matured transaction ever landed.
matured as (
    {% if is_incremental() %}
    select candidate.*
    from (
        select transactions.*
        from transactions
        where transactions.transaction_at <= (select clock_at from data_clock) - {{ maturity }}
          and transactions.transaction_at > (select matured_through_at from labels_so_far) - {{ maturity }}
        union all
        select loaded_since.*
        from {{ ref('stg_fraud__transactions') }} as loaded_since
        where loaded_since.loaded_at > (select loaded_through_at from labels_so_far)
          and loaded_since.transaction_at
              <= least((select clock_at from data_clock), (select matured_through_at from labels_so_far)) - {{ maturity }}
    ) as candidate
    where not exists (select 1 from {{ this }} as labelled where labelled.transaction_id = candidate.transaction_id)
    {% else %}
    select transactions.*
    from transactions
    where transactions.transaction_at <= (select clock_at from data_clock) - {{ maturity }}
    {% endif %}
),

reported as (
    select
        transaction_id,
        min(reported_at) as reported_at,
        max(loaded_at) as loaded_at
    from chargebacks
    where is_fraud
    group by all
),

final as (
    select
        matured.transaction_id,
        matured.card_id,
        matured.merchant_id,
        matured.merchant_category,
        matured.transaction_at,
        matured.transaction_at - interval '1 microsecond' as prediction_at,
        matured.amount,
        matured.latitude,
        matured.longitude,
        coalesce(
            reported.reported_at between matured.transaction_at and matured.transaction_at + {{ maturity }},
            false
        ) as is_fraud,
        case
            when reported.reported_at between matured.transaction_at and matured.transaction_at + {{ maturity }}
                then reported.reported_at
        end as fraud_reported_at,
        matured.transaction_at + {{ maturity }} as label_matures_at,
        greatest(matured.loaded_at, coalesce(reported.loaded_at, matured.loaded_at)) as loaded_at
    from matured
    left join reported on reported.transaction_id = matured.transaction_id
)

select * from final
