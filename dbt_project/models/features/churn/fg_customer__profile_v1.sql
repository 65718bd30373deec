-- The customer's subscription profile, one row per customer, from the moment it signed up: plan, monthly
-- price, country and acquisition channel. Static in this data: a plan change would be a new row at its own
-- event time. Tenure is the time from `event_at` (the signup) to the prediction (the label's tenure_days).
with

customers as (
    select * from {{ ref('stg_churn__customers') }}
),

new_customers as (
    {{ rows_loaded_since_watermark('customers') }}
),

final as (
    select
        customer_id,
        signup_at::timestamptz as event_at,
        plan::varchar as plan,
        monthly_price::double as monthly_price,
        country::varchar as country,
        signup_channel::varchar as signup_channel,
        loaded_at::timestamptz as loaded_at
    from new_customers
)

select * from final
