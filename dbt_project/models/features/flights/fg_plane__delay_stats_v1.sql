-- Trailing departure-delay statistics per airframe: a plane late this morning tends to stay late.
{{ trailing_delay_stats(
    entity_columns=['tail_number'],
    windows_days=[1, 7],
    delay_threshold_minutes=var('flight_delay_threshold_minutes'),
) }}
