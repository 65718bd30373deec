"""The ``monitoring`` schema: plain tables any SQL client can query.

* ``monitoring.references``: one row per model version whose reference is built: the snapshot it came
  from, which part of it (``train``: spine time before the recorded validation cut; ``all`` for a version
  registered without its split), its rows and when it was built;
* ``monitoring.reference_profile``: that reference as value counts, one row per (model, version, feature,
  value) with the count ``n`` (see :mod:`.profile`); written once per version, in one transaction with its
  ``references`` row;
* ``monitoring.feature_drift``: one row per model, version, source (``batch`` or ``online``), feature,
  window, statistic; a window's rows are replaced in one transaction when it is computed again;
* ``monitoring.performance``: one row per model, version, window, slice (``slice_column`` and
  ``slice_value`` empty: every row), metric; replaced per window like the drift rows.
"""

from __future__ import annotations

from models_ml.offline.store import OfflineStore

SCHEMA = "monitoring"
REFERENCES = f"{SCHEMA}.references"
REFERENCE_PROFILE = f"{SCHEMA}.reference_profile"
FEATURE_DRIFT = f"{SCHEMA}.feature_drift"
PERFORMANCE = f"{SCHEMA}.performance"

_DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {REFERENCES} (
        model_name varchar not null,
        version integer not null,
        snapshot_id varchar not null,
        part varchar not null,
        spine_time_before timestamptz,
        rows bigint not null,
        built_at timestamptz not null,
        primary key (model_name, version)
    )""",
    f"""create table if not exists {REFERENCE_PROFILE} (
        model_name varchar not null,
        version integer not null,
        feature varchar not null,
        kind varchar not null,
        value_num double,
        value_cat varchar,
        n bigint not null
    )""",
    f"""create table if not exists {FEATURE_DRIFT} (
        model_name varchar not null,
        version integer not null,
        source varchar not null,
        feature varchar not null,
        window_start timestamptz not null,
        window_end timestamptz not null,
        statistic varchar not null,
        value double,
        computed_at timestamptz not null,
        primary key (model_name, version, source, feature, window_start, window_end, statistic)
    )""",
    f"""create table if not exists {PERFORMANCE} (
        model_name varchar not null,
        version integer not null,
        window_start timestamptz not null,
        window_end timestamptz not null,
        slice_column varchar not null,
        slice_value varchar not null,
        metric varchar not null,
        value double,
        computed_at timestamptz not null,
        primary key (model_name, version, window_start, window_end, slice_column, slice_value, metric)
    )""",
)


def ensure_tables(store: OfflineStore) -> None:
    """Create the monitoring tables when missing (idempotent)."""
    for statement in _DDL:
        store.execute(statement)
