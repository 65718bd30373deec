{#-
  Helpers for base models, which are append-only incremental tables of typed raw rows: each run types and
  validates only the rows loaded since the last run (`new_raw_rows`), which keeps a daily run cheap.
-#}

{#- The raw rows not yet in this base table (all of them on a full refresh). -#}
{% macro new_raw_rows(source_relation) -%}
    select *
    from {{ source_relation }}
    {% if is_incremental() %}
    where _loaded_at > (select coalesce(max(loaded_at), '-infinity'::timestamptz) from {{ this }})
    {% endif %}
{%- endmacro %}

{#-
  True for a row whose key was already seen: loaded earlier (in this table, valid or not) or earlier in
  the same batch (by load time, then by raw record, so the choice is deterministic). The first copy wins,
  on a full refresh and incrementally alike.
-#}
{% macro is_duplicate_key(key_columns) -%}
    (
        row_number() over (partition by {{ key_columns | join(', ') }} order by loaded_at, record) > 1
        {% if is_incremental() %}
        or exists (
            select 1 from {{ this }} as earlier
            where {% for column in key_columns %}earlier.{{ column }} = typed.{{ column }}{{ " and " if not loop.last }}{% endfor %}
        )
        {% endif %}
    )
{%- endmacro %}
