-- Trailing departure-delay statistics per route, origin -> destination.
{{ trailing_delay_stats(
    entity_columns=['origin_airport_code', 'destination_airport_code'],
    windows_days=[7, 30],
    delay_threshold_minutes=var('flight_delay_threshold_minutes'),
) }}
