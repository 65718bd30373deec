"""Per-feature summary of ``monitoring.feature_drift`` over a span of windows, flagged against PSI thresholds.

The summary is one SQL aggregate over the stored rows (worst window per statistic), so what ``fti monitor
drift`` prints is what any SQL client reads from the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models_ml.core.time import TimeRange
from models_ml.monitoring.tables import FEATURE_DRIFT, REFERENCE_PROFILE
from models_ml.offline.store import OfflineStore

#: PSI levels: below 0.1 stable, from 0.1 a shift worth a look, from 0.25 a shift to act on (the usual rule)
PSI_WARN, PSI_ALERT = 0.1, 0.25
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class FeatureDrift:
    """One feature (or the score) over the span: the worst value of each statistic across its windows."""

    feature: str
    kind: str | None
    windows: int
    rows: int
    psi: float | None
    psi_window: dt.datetime | None  # the start of the window with the largest PSI
    ks: float | None
    missing_change: float | None  # the largest absolute change of the missing rate
    out_of_range: float | None
    unseen: float | None

    def level(self, warn: float = PSI_WARN, alert: float = PSI_ALERT) -> str:
        """``alert``, ``warn`` or ``ok`` by the largest PSI."""
        if self.psi is not None and self.psi >= alert:
            return "alert"
        return "warn" if self.psi is not None and self.psi >= warn else "ok"


def summarize(store: OfflineStore, model_name: str, version: int, source: str, span: TimeRange) -> list[FeatureDrift]:
    """Every feature with rows in the windows inside ``span``, largest PSI first."""
    rows = store.query(f"""
        with d as (
            select * from {FEATURE_DRIFT}
            where model_name = ? and version = ? and source = ? and window_start >= ? and window_end <= ?
        ),
        kinds as (
            select distinct feature, kind from {REFERENCE_PROFILE} where model_name = ? and version = ?
        ),
        worst as (
            select feature, window_start,
                   row_number() over (partition by feature order by value desc, window_start) as r
            from d where statistic = 'psi'
        )
        select d.feature, max(k.kind) as kind, count(distinct d.window_start) as windows,
               sum(case when d.statistic = 'rows' then d.value end) as rows,
               max(case when d.statistic = 'psi' then d.value end) as psi,
               max(w.window_start) as psi_window,
               max(case when d.statistic = 'ks' then d.value end) as ks,
               max(case when d.statistic = 'missing_rate_change' then abs(d.value) end) as missing_change,
               max(case when d.statistic = 'out_of_range_share' then d.value end) as out_of_range,
               max(case when d.statistic = 'unseen_share' then d.value end) as unseen
        from d
        left join kinds k on k.feature = d.feature
        left join worst w on w.feature = d.feature and w.r = 1
        group by d.feature
        order by psi desc nulls last, d.feature""",
        [model_name, version, source, span.start, span.end, model_name, version])
    return [FeatureDrift(
        feature=r["feature"], kind=r["kind"], windows=int(r["windows"]), rows=int(r["rows"] or 0), psi=r["psi"],
        psi_window=r["psi_window"].astimezone(_UTC) if r["psi_window"] is not None else None, ks=r["ks"],
        missing_change=r["missing_change"], out_of_range=r["out_of_range"], unseen=r["unseen"],
    ) for r in rows]
