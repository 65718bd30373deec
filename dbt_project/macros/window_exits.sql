{#-
  `window_exits(events, partition_by, lengths, clock)`: the moments the rows of `events` leave each trailing
  window, as rows (`partition_by` columns, `event_at`, `loaded_at`) to union with the events as empty ones.

  A trailing-window feature row exists only at the moments something happened, and the point-in-time join
  takes the latest row at or before the spine time: without a row when an event LEAVES a window, a customer
  who stopped using the product keeps its last "7 sessions in 7 days" forever. With one row at
  `event_at + length` for each window length (the window is (t - length, t], so the event is out of it
  then), every row's counts stay true until the next row.

  Exits are capped at the data clock, `clock` (a relation with `day_end_at` and `reached_loaded_at`, e.g.
  stg_churn__landed_days): an exit after the data landed so far is not known yet (an event before it may
  still arrive). An exit's `loaded_at` is when it became computable: the later of its event's ingestion time
  and the time the data first reached the exit (`reached_loaded_at` of the first landed day ending at or
  after it). An incremental run (macros/windowed_incremental.sql) therefore sees an exit as new when the
  clock passes it, and recomputes from there.
-#}
{% macro window_exits(events, partition_by, lengths, clock) -%}
    select
        exits.{{ partition_by | join(', exits.') }},
        exits.event_at,
        greatest(exits.loaded_at, exit_clock.reached_loaded_at) as loaded_at
    from (
        {%- for length in lengths %}
        select {{ partition_by | join(', ') }}, event_at + interval '{{ length }}' as event_at, loaded_at
        from {{ events }}
        {{ "union all" if not loop.last }}
        {%- endfor %}
    ) as exits
    asof join {{ clock }} as exit_clock on exits.event_at <= exit_clock.day_end_at
{%- endmacro %}
