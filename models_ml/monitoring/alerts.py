"""Alerts: a monitored span's drift, performance and freshness held against the view's thresholds.

Read from what the run has just written (``monitoring.feature_drift`` through :func:`.summary.summarize`,
``monitoring.performance``) and the freshness it checked, so an alert says nothing the tables do not:

* ``feature_drift``: PSI ≥ ``psi`` on an input, in any window of the span; an ``error`` that retrains when
  the input is among the model's ``top_k`` by importance (gain), a ``warn`` otherwise;
* ``score_drift``: PSI ≥ ``psi`` on the score, a ``warn`` (it follows the inputs; the inputs say why);
* ``null_rate``: a feature's missing rate moved by ≥ ``null_rate`` from the reference's, a ``warn``;
* ``performance``: the ROC-AUC of the evaluated days (label share ≥ ``min_label_share``, with at least
  ``min_labelled`` labelled rows in all; the days' AUCs averaged weighted by their labelled rows) at least
  ``auc_drop`` below the test split's, an ``error`` that retrains;
* ``stale_group``: a group at or past ``stale_groups`` freshness, at its level; never retrains.

The span's rows of ``monitoring.alerts`` are replaced in one transaction, so monitoring a span again
leaves one set of alerts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from models_ml.core.time import TimeRange
from models_ml.monitoring.config import Thresholds
from models_ml.monitoring.freshness import GroupFreshness
from models_ml.monitoring.performance import OVERALL
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.summary import FeatureDrift
from models_ml.monitoring.tables import ALERTS, PERFORMANCE
from models_ml.offline.store import OfflineStore

_UTC = dt.timezone.utc


@dataclass(frozen=True)
class Alert:
    kind: str
    subject: str
    severity: str  # warn or error
    value: float | None
    threshold: float | None
    window_start: dt.datetime | None  # the worst window, when the alert is about one
    retrain: bool
    message: str


@dataclass(frozen=True)
class EvaluatedPerformance:
    """The span's evaluated days pooled: their count, labelled rows and weighted ROC-AUC (None: too few)."""

    days: int
    labelled: int
    roc_auc: float | None
    test_roc_auc: float | None


def age_text(age: dt.timedelta) -> str:
    """An age as a person reads it: hours below two days, days above (negative: later than the span's end)."""
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if abs(hours) < 48 else f"{hours / 24:.1f} days"


def top_features(importance: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` inputs of largest importance (ties by name, so the choice is stable)."""
    return [name for name, _ in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def evaluated_performance(store: OfflineStore, model_name: str, version: int, span: TimeRange,
                          thresholds: Thresholds, test_roc_auc: float | None) -> EvaluatedPerformance:
    """The days of ``span`` in ``monitoring.performance`` whose labels are final enough, pooled."""
    if not store.exists("monitoring", "performance"):
        return EvaluatedPerformance(0, 0, None, test_roc_auc)
    rows = store.query(f"""
        with days as (
            select window_start,
                   max(case when metric = 'label_share' then value end) as share,
                   max(case when metric = 'labelled' then value end) as labelled,
                   max(case when metric = 'roc_auc' then value end) as roc_auc
            from {PERFORMANCE}
            where model_name = ? and version = ? and slice_column = ? and window_start >= ? and window_end <= ?
            group by window_start
        )
        select count(*) as days, sum(labelled) as labelled, sum(roc_auc * labelled) / sum(labelled) as roc_auc
        from days where share >= ? and roc_auc is not null""",
        [model_name, version, OVERALL, span.start, span.end, thresholds.min_label_share])
    row = rows[0]
    labelled = int(row["labelled"] or 0)
    auc = row["roc_auc"] if labelled and labelled >= thresholds.min_labelled else None
    return EvaluatedPerformance(int(row["days"] or 0), labelled, auc, test_roc_auc)


def evaluate(drift: Sequence[FeatureDrift], importance: Mapping[str, float], performance: EvaluatedPerformance,
             freshness: Sequence[GroupFreshness], thresholds: Thresholds) -> list[Alert]:
    """Every alert of the module docstring, retraining ones first."""
    top = set(top_features(importance, thresholds.top_k))
    alerts: list[Alert] = []
    for f in drift:
        on = f" on {f.psi_window:%Y-%m-%d %H:%M}" if f.psi_window else ""
        if f.psi is not None and f.psi >= thresholds.psi:
            if f.feature == SCORE_FEATURE:
                alerts.append(Alert("score_drift", f.feature, "warn", f.psi, thresholds.psi, f.psi_window, False,
                                    f"the score's PSI is {f.psi:.3f}{on} (≥ {thresholds.psi:g})"))
            else:
                ranked = f.feature in top
                alerts.append(Alert(
                    "feature_drift", f.feature, "error" if ranked else "warn", f.psi, thresholds.psi, f.psi_window,
                    ranked and thresholds.retrain,
                    f"{f.feature} PSI {f.psi:.3f}{on} (≥ {thresholds.psi:g}); "
                    f"{'one of' if ranked else 'not among'} the top {thresholds.top_k} inputs by importance"))
        if f.feature != SCORE_FEATURE and f.missing_change is not None and f.missing_change >= thresholds.null_rate:
            alerts.append(Alert("null_rate", f.feature, "warn", f.missing_change, thresholds.null_rate, None, False,
                                f"{f.feature}'s missing rate moved by {f.missing_change:.1%} from the reference's "
                                f"(≥ {thresholds.null_rate:.0%})"))
    p = performance
    if p.roc_auc is not None and p.test_roc_auc is not None and p.test_roc_auc - p.roc_auc >= thresholds.auc_drop:
        drop = p.test_roc_auc - p.roc_auc
        alerts.append(Alert("performance", "roc_auc", "error", drop, thresholds.auc_drop, None, thresholds.retrain,
                            f"ROC-AUC {p.roc_auc:.4f} on {p.days} evaluated days ({p.labelled:,} labelled rows) is "
                            f"{drop:.4f} below the test split's {p.test_roc_auc:.4f} (≥ {thresholds.auc_drop:g})"))
    if thresholds.stale_groups != "off":
        for g in freshness:
            if g.level in ("warn", "error") and (g.level == "error" or thresholds.stale_groups == "warn"):
                ages = ", ".join(f"{what} {age_text(age)}" for what, age in (("last event", g.event_age),
                                                                  ("last build", g.build_age)) if age is not None)
                alerts.append(Alert("stale_group", g.label, g.level, None, None, None, False,
                                    f"feature group {g.group} v{g.version} is {g.level}-stale ({ages or 'not built'})"))
    return sorted(alerts, key=lambda a: (not a.retrain, a.kind, a.subject))


def write_alerts(store: OfflineStore, alerts: Sequence[Alert], *, model_name: str, version: int, span: TimeRange,
                 computed_at: dt.datetime) -> int:
    """Replace the span's alerts of the version by ``alerts``, in one transaction."""
    key = [model_name, version, span.start, span.end]
    with store.transaction():
        store.execute(f"delete from {ALERTS} where model_name = ? and version = ? and span_start = ? and span_end = ?",
                      key)
        if alerts:
            store.executemany(f"insert into {ALERTS} values ({', '.join('?' * 13)})", [
                [*key, a.kind, a.subject, a.severity, a.value, a.threshold, a.window_start, a.retrain, a.message,
                 computed_at] for a in alerts])
    return len(alerts)


def read_alerts(store: OfflineStore, model_name: str, since: dt.datetime | None = None) -> list[dict]:
    """The stored alerts of the model (spans ending after ``since``), newest span first."""
    if not store.exists("monitoring", "alerts"):
        return []
    return store.query(f"select * from {ALERTS} where model_name = ? and span_end > ? "
                       f"order by span_end desc, retrain desc, kind, subject",
                       [model_name, since or dt.datetime(1970, 1, 1, tzinfo=_UTC)])
