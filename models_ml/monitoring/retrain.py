"""The retraining trigger's ledger: a monitored span whose alerts call for retraining starts it once.

``monitoring.retrains`` holds one row per model, version and span: :func:`claim` inserts it (and says
whether it was new) before anything is started, :func:`record` fills in how it was started and what came
of it. Monitoring a span again finds the row and starts nothing, so a re-run never trains twice. What is
started is the ordinary training run (its gate and champion comparison decide the alias); nothing here
touches an alias.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from models_ml.core.time import TimeRange
from models_ml.monitoring.alerts import Alert
from models_ml.monitoring.tables import RETRAINS, ensure_tables
from models_ml.offline.store import OfflineStore

PENDING = "pending"


def reason(alerts: Sequence[Alert]) -> str:
    """The retraining alerts in one line (empty: nothing calls for retraining)."""
    return "; ".join(a.message for a in alerts if a.retrain)


def claim(store: OfflineStore, model_name: str, version: int, span: TimeRange, why: str,
          requested_at: dt.datetime) -> bool:
    """Record that the span's alerts start retraining; False when it was recorded already (started before)."""
    ensure_tables(store)
    key = [model_name, version, span.start, span.end]
    with store.transaction():
        found = store.execute(f"select count(*) from {RETRAINS} where model_name = ? and version = ? and "
                              f"span_start = ? and span_end = ?", key)
        if found[0][0]:
            return False
        store.execute(f"insert into {RETRAINS} values (?, ?, ?, ?, ?, ?, ?, null, null)",
                      [*key, requested_at, why, PENDING])
    return True


def record(store: OfflineStore, model_name: str, version: int, span: TimeRange, *, how: str,
           flow_run_id: str | None, outcome: str) -> None:
    """How the claimed retraining was started and what came of it."""
    store.execute(f"update {RETRAINS} set how = ?, flow_run_id = ?, outcome = ? where model_name = ? and "
                  f"version = ? and span_start = ? and span_end = ?",
                  [how, flow_run_id, outcome, model_name, version, span.start, span.end])


def read_retrains(store: OfflineStore, model_name: str) -> list[dict]:
    """The model's retraining requests, newest first."""
    if not store.exists("monitoring", "retrains"):
        return []
    return store.query(f"select * from {RETRAINS} where model_name = ? order by requested_at desc", [model_name])
