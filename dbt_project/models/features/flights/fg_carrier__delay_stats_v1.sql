-- Trailing departure-delay statistics per carrier (see macros/trailing_delay_stats.sql for exactness).
{{ trailing_delay_stats(
    entity_columns=['carrier_code'],
    windows_days=[7, 30],
    delay_threshold_minutes=var('flight_delay_threshold_minutes'),
) }}
