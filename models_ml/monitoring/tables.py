"""The ``monitoring`` schema: plain tables any SQL client can query.

* ``monitoring.references``: one row per model version whose reference is built: the snapshot it came
  from, which part of it (``train``: spine time before the recorded validation cut; ``all`` for a version
  registered without its split), its rows and when it was built;
* ``monitoring.reference_profile``: that reference as value counts, one row per (model, version, feature,
  value) with the count ``n`` (see :mod:`.profile`; a numeric feature of many distinct values is kept as
  about :data:`~.profile.MAX_EXACT_VALUES` buckets, one row per bucket at its largest value); written once
  per version, in one transaction with its ``references`` row;
* ``monitoring.feature_drift``: one row per model, version, source (``batch`` or ``online``), feature,
  window, statistic; a window's rows are replaced in one transaction when it is computed again;
* ``monitoring.score_distribution``: the score's counts per bin of [0, 1], per model, version, source and
  window, replaced with the window's drift rows (see :mod:`.scores`);
* ``monitoring.performance``: one row per model, version, window, slice (``slice_column`` and
  ``slice_value`` empty: every row), metric; replaced per window like the drift rows;
* ``monitoring.group_freshness``: one row per feature group version and ``as_of`` (the data time checked):
  latest event and load, their ages in seconds, the declared expectation and the level (see :mod:`.freshness`);
* ``monitoring.alerts``: one row per model, version, monitored span, alert kind and subject (a feature, a
  group, a metric): severity, value, threshold, whether it retrains, a sentence; a span's rows are replaced
  when it is monitored again (see :mod:`.alerts`);
* ``monitoring.retrains``: one row per model, version and span whose alerts started retraining: how (a
  deployment run or in process), the flow run, and what came of it; a span retrains once.
"""

from __future__ import annotations

from models_ml.offline.store import OfflineStore

SCHEMA = "monitoring"
REFERENCES = f"{SCHEMA}.references"
REFERENCE_PROFILE = f"{SCHEMA}.reference_profile"
FEATURE_DRIFT = f"{SCHEMA}.feature_drift"
SCORE_DISTRIBUTION = f"{SCHEMA}.score_distribution"
PERFORMANCE = f"{SCHEMA}.performance"
GROUP_FRESHNESS = f"{SCHEMA}.group_freshness"
ALERTS = f"{SCHEMA}.alerts"
RETRAINS = f"{SCHEMA}.retrains"

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
    f"""create table if not exists {SCORE_DISTRIBUTION} (
        model_name varchar not null,
        version integer not null,
        source varchar not null,
        window_start timestamptz not null,
        window_end timestamptz not null,
        bin integer not null,
        n bigint not null,
        computed_at timestamptz not null,
        primary key (model_name, version, source, window_start, window_end, bin)
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
    f"""create table if not exists {GROUP_FRESHNESS} (
        group_name varchar not null,
        group_version integer not null,
        as_of timestamptz not null,
        latest_event_at timestamptz,
        latest_loaded_at timestamptz,
        event_age_seconds double,
        build_age_seconds double,
        warn_after_seconds double,
        error_after_seconds double,
        level varchar not null,
        computed_at timestamptz not null,
        primary key (group_name, group_version, as_of)
    )""",
    f"""create table if not exists {ALERTS} (
        model_name varchar not null,
        version integer not null,
        span_start timestamptz not null,
        span_end timestamptz not null,
        kind varchar not null,
        subject varchar not null,
        severity varchar not null,
        value double,
        threshold double,
        window_start timestamptz,
        retrain boolean not null,
        message varchar not null,
        computed_at timestamptz not null,
        primary key (model_name, version, span_start, span_end, kind, subject)
    )""",
    f"""create table if not exists {RETRAINS} (
        model_name varchar not null,
        version integer not null,
        span_start timestamptz not null,
        span_end timestamptz not null,
        requested_at timestamptz not null,
        reason varchar not null,
        how varchar not null,
        flow_run_id varchar,
        outcome varchar,
        primary key (model_name, version, span_start, span_end)
    )""",
)


def ensure_tables(store: OfflineStore) -> None:
    """Create the monitoring tables when missing (idempotent)."""
    for statement in _DDL:
        store.execute(statement)
