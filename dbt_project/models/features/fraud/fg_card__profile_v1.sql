-- The card's home location, one row per card, from the day it was issued (the bank knows the address from
-- then on). Static in this data: a change of address would be a new row at its own event time.
with

cards as (
    select * from {{ ref('stg_fraud__cards') }}
),

new_cards as (
    {{ rows_loaded_since_watermark('cards') }}
),

final as (
    select
        card_id,
        issued_at::timestamptz as event_at,
        home_latitude::double as home_latitude,
        home_longitude::double as home_longitude,
        loaded_at::timestamptz as loaded_at
    from new_cards
)

select * from final
