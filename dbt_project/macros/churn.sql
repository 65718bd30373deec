{#-
  The subscription-churn spine, shared by the label (label_customer__churn) and the inference spine
  (spine_customer__active), so both list the same customers with the same columns.
-#}

{#-
  `churn_month_starts(clock)`: every month start (00:00 UTC) from the first landed day through the data
  clock (`clock`: stg_churn__landed_days), as `prediction_at`. A month start before the first landed day is
  left out: the data says nothing about it. Day arithmetic on dates, so the session time zone plays no part.
-#}
{% macro churn_month_starts(clock) -%}
    select timezone('UTC', month_start::timestamp) as prediction_at
    from (
        select unnest(generate_series(date_trunc('month', first_day)::timestamp,
                                      date_trunc('month', last_day + 1)::timestamp, interval 1 month)) as month_start,
               first_day,
               last_day
        from (select min(landed_day) as first_day, max(landed_day) as last_day from {{ clock }})
        where first_day is not null
    )
    where month_start >= first_day::timestamp
      and month_start <= (last_day + 1)::timestamp
{%- endmacro %}

{#-
  `churn_active_customers(month_starts, customers, cancellations)`: one row per customer active at each
  month start: signed up before it and not cancelled before it. With the customer's cancellation, if any,
  and the request columns a prediction at the month start knows (plan, country, whole days of tenure).
-#}
{% macro churn_active_customers(month_starts, customers, cancellations) -%}
    select
        {{ customers }}.customer_id,
        {{ month_starts }}.prediction_at,
        {{ customers }}.plan,
        {{ customers }}.country,
        ((epoch_us({{ month_starts }}.prediction_at) - epoch_us({{ customers }}.signup_at)) // 86400000000)::integer
            as tenure_days,
        {{ customers }}.signup_at,
        {{ customers }}.loaded_at as customer_loaded_at,
        {{ cancellations }}.cancelled_at,
        {{ cancellations }}.reason as cancellation_reason,
        {{ cancellations }}.loaded_at as cancellation_loaded_at
    from {{ month_starts }}
    inner join {{ customers }} on {{ customers }}.signup_at < {{ month_starts }}.prediction_at
    left join {{ cancellations }} on {{ cancellations }}.customer_id = {{ customers }}.customer_id
    where {{ cancellations }}.cancelled_at is null
       or {{ cancellations }}.cancelled_at >= {{ month_starts }}.prediction_at
{%- endmacro %}
