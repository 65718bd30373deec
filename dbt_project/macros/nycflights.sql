{#-
  The flights domain's shared column definitions: the schedule columns of a raw flights or schedule row, the
  flight id, and the prediction-time columns. The base models of both raw tables and the label and spine
  models use them, so a flight scored from tomorrow's schedule has exactly the keys and request features of
  the same flight's label row (no skew between the inference spine and the training spine).
-#}

{#- Typed schedule columns of a raw row (flights and schedule carry the same ones, as text). -#}
{% macro nycflights_schedule_columns() -%}
        nullif(trim(carrier), '') as carrier_code,
        try_cast(flight as integer) as flight_number,
        nullif(trim(tailnum), '') as tail_number,
        nullif(trim(origin), '') as origin_airport_code,
        nullif(trim(dest), '') as destination_airport_code,
        {{ local_to_utc(
            make_wall_clock_timestamp(
                'try_cast(year as integer)', 'try_cast(month as integer)', 'try_cast(day as integer)',
                integer_divide('try_cast(sched_dep_time as integer)', '100'), 'try_cast(sched_dep_time as integer) % 100'),
            "'America/New_York'") }} as scheduled_departure_at,
        {{ try_as_timestamptz('time_hour') }} as scheduled_hour_at,
        try_cast(distance as integer) as distance_miles
{%- endmacro %}

{#- The validation rules of a schedule (a case branch each, first broken wins). -#}
{% macro nycflights_schedule_rules() -%}
            when carrier_code is null or flight_number is null or origin_airport_code is null
                then 'null_key'
            when scheduled_departure_at is null
                then 'unreadable_schedule'
            when date_trunc('hour', scheduled_departure_at) is distinct from scheduled_hour_at
                then 'schedule_disagrees_with_time_hour'
{%- endmacro %}

{#- The flight's key: carrier + flight number + origin + scheduled UTC departure. -#}
{% macro nycflights_flight_id() -%}
        carrier_code
            || lpad({{ as_text('flight_number') }}, 4, '0')
            || '-' || origin_airport_code
            || '-' || {{ utc_minute_text('scheduled_departure_at') }}
{%- endmacro %}

{#-
  What the flight-delay model knows of a flight before it departs: its keys, route, plane, schedule, the
  prediction time and the request features. The inference spine is exactly these; the label adds the outcome.
-#}
{% macro flight_delay_spine_columns() -%}
        flight_id,
        carrier_code,
        origin_airport_code,
        destination_airport_code,
        tail_number,
        scheduled_departure_at,
        {{ flight_prediction_columns() }},
        distance_miles
{%- endmacro %}

{#- When the flight-delay prediction is made, and the request features known then (New York local). -#}
{% macro flight_prediction_columns() -%}
        {{ subtract_hours('scheduled_departure_at', var('flight_delay_lead_hours')) }} as prediction_at,
        extract(hour from {{ utc_to_local('scheduled_departure_at', "'America/New_York'") }})::integer as scheduled_hour_local,
        {{ iso_weekday(utc_to_local('scheduled_departure_at', "'America/New_York'")) }}::integer as scheduled_weekday_local
{%- endmacro %}
