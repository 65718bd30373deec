-- Version 2 of the carrier's trailing departure-delay statistics: the 7- and 30-day windows of v1 plus a
-- 1-day window (how late the carrier runs today). Built beside v1, which keeps serving the models trained
-- on it; the same macro, so both are exact incrementally (macros/trailing_delay_stats.sql).
{{ trailing_delay_stats(
    entity_columns=['carrier_code'],
    windows_days=[1, 7, 30],
    delay_threshold_minutes=var('flight_delay_threshold_minutes'),
) }}
