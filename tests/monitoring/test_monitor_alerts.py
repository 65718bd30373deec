"""Thresholds and the trigger on a real champion: a shift injected into an important input, or outcomes that
turn against the model, raise an alert that retrains; the monitoring flow then starts the training flow
once per span (a re-run starts nothing), and the new version goes through the usual gate."""

from __future__ import annotations

import datetime as dt

import pytest
from fti_testing import copy_home, query
from monitoring_testing import DAYS, MODEL

from models_ml.definitions.catalog import load_catalog
from models_ml.monitoring.alerts import EvaluatedPerformance, evaluate
from models_ml.monitoring.config import MonitoringConfigError, Thresholds, thresholds
from models_ml.monitoring.freshness import worse
from models_ml.monitoring.pipeline import monitor
from models_ml.offline.store import opened
from models_ml.training import registry

pytestmark = pytest.mark.slow
# nothing drifts or drops this much: only what a test injects alerts (the slice's two scored days are
# already 0.035 below the test split's ROC-AUC, past the view's 0.03)
QUIET = {"psi": 100.0, "null_rate": 2.0, "auc_drop": 1.0}


def _shift_top_group_feature(settings) -> tuple[str, int]:
    """Multiply the most important numeric input that comes from a feature group by 10 (plus 100) on the scored
    days, in the warehouse; (its model name, its rank by importance, 1-based)."""
    version, model = registry.load(settings, MODEL)
    ranked = sorted(model.feature_importance().items(), key=lambda kv: (-kv[1], kv[0]))
    view = load_catalog(settings).view(MODEL)
    numeric = ("double", "float", "integer", "bigint", "smallint", "decimal", "numeric", "real")
    sources = {ref.output_name(c): (ref.group, c) for ref in view.features for c in ref.features
               if any(f.name == c and (f.data_type or "").lower().startswith(numeric) for f in ref.group.columns)}
    rank, name = next((i + 1, n) for i, (n, _) in enumerate(ranked) if n in sources)
    group, column = sources[name]
    with opened(settings) as store:
        store.execute(f'update {group.schema}."{group.relation}" set "{column}" = "{column}" * 10 + 100 '
                      f"where {group.event_time} >= ?", [dt.datetime(2013, 1, 8, tzinfo=dt.timezone.utc)])
    return name, rank


def test_an_injected_shift_on_an_important_input_alerts_and_calls_for_retraining_once(monitored_home, tmp_path):
    settings = copy_home(monitored_home, tmp_path / "home")
    quiet = monitor(settings, MODEL, overrides=QUIET)
    assert [w.start.date() for w in quiet.drift.windows] == list(DAYS)
    assert not [a for a in quiet.alerts if a.kind in ("feature_drift", "performance")]
    # freshness of every group the view reads: event age as of the span's end, build age as of now, each
    # against the group's meta.fti.freshness; a stale group alerts at its level and never retrains
    view = load_catalog(settings).view(MODEL)
    fresh = {g.group: g for g in quiet.freshness}
    assert set(fresh) == {ref.group.name for ref in view.features} and any(g.declared for g in fresh.values())
    for g in fresh.values():
        assert g.event_age == quiet.span.end - g.latest_event_at
        assert g.level == (worse(g.expectation.level(g.event_age), g.expectation.level(g.build_age))
                           if g.declared else "none")  # a group declaring no expectation is never alerted on
    stale = {a.subject: a for a in quiet.alerts if a.kind == "stale_group"}
    assert {g.label for g in quiet.freshness if g.level == "error"} == set(stale)
    assert not any(a.retrain for a in stale.values())
    assert query(settings, "select count(*) from monitoring.group_freshness") == [(len(fresh),)]

    feature, rank = _shift_top_group_feature(settings)
    run = monitor(settings, MODEL, overrides={"top_k": rank, "null_rate": 2.0, "auc_drop": 1.0})
    drift = [a for a in run.alerts if a.kind == "feature_drift" and a.subject == feature]
    assert drift and drift[0].severity == "error" and drift[0].retrain and drift[0].value >= 0.2
    assert run.retrain_claimed and feature in run.retrain_reason
    stored = query(settings, "select kind, subject, retrain from monitoring.alerts where subject = ?", [feature])
    assert stored == [("feature_drift", feature, True)]

    again = monitor(settings, MODEL, overrides={"top_k": rank, "null_rate": 2.0, "auc_drop": 1.0})
    assert again.retrain_called_for and not again.retrain_claimed  # the span started one already
    assert query(settings, "select count(*) from monitoring.retrains") == [(1,)]
    assert query(settings, "select count(*) from monitoring.alerts where subject = ?", [feature]) == [(1,)]

    # outside the top k the same drift only warns, and retrains nothing
    below = monitor(settings, MODEL, overrides={"top_k": rank - 1, "null_rate": 2.0, "auc_drop": 1.0}) if rank > 1 else None
    if below is not None:
        (warned,) = [a for a in below.alerts if a.kind == "feature_drift" and a.subject == feature]
        assert warned.severity == "warn" and not warned.retrain


def test_outcomes_turning_against_the_model_alert_on_performance(monitored_home, tmp_path):
    settings = copy_home(monitored_home, tmp_path / "home")
    with opened(settings) as store:  # every outcome of the scored days the other way round
        store.execute("update labels.label_flight__departure_delay set is_delayed = not is_delayed "
                      "where scheduled_departure_at >= ?", [dt.datetime(2013, 1, 9, tzinfo=dt.timezone.utc)])
    run = monitor(settings, MODEL, overrides={**QUIET, "auc_drop": 0.03})
    (alert,) = [a for a in run.alerts if a.kind == "performance"]
    assert alert.retrain and alert.value >= 0.03
    assert run.evaluated.days == len(DAYS) and run.evaluated.roc_auc < 0.5 < run.evaluated.test_roc_auc


def test_the_monitoring_flow_starts_training_once_and_the_gate_decides(monitored_home, tmp_path, prefect_harness):
    from flows.monitoring import monitoring

    settings = copy_home(monitored_home, tmp_path / "home")
    feature, rank = _shift_top_group_feature(settings)
    versions = len(registry.list_versions(settings, MODEL))
    top_k = thresholds(load_catalog(settings).view(MODEL)).top_k  # the view's, as its YAML declares them
    assert rank <= top_k, f"the most important group input {feature} ranks {rank}, beyond the view's top {top_k}"
    first = monitoring(model=MODEL, home=str(settings.home))
    assert first["retrain_claimed"] and first["retrain"].startswith("trained v")
    assert len(registry.list_versions(settings, MODEL)) == versions + 1
    (row,) = query(settings, "select how, outcome from monitoring.retrains")
    assert row == ("in process", first["retrain"])
    second = monitoring(model=MODEL, home=str(settings.home))
    assert second["retrain"] == "called for; already started for this span"
    assert len(registry.list_versions(settings, MODEL)) == versions + 1


def test_thresholds_come_from_the_view_and_bad_ones_name_the_key():
    limits = Thresholds()
    assert (limits.psi, limits.top_k, limits.auc_drop) == (0.2, 5, 0.03)
    from types import SimpleNamespace

    view = SimpleNamespace(name="v", version=1, monitoring=(("psi", 0.3), ("top_k", 3)))
    assert thresholds(view, None).psi == 0.3 and thresholds(view, {"top_k": 9}).top_k == 9
    with pytest.raises(MonitoringConfigError, match="psy"):
        thresholds(SimpleNamespace(name="v", version=1, monitoring=(("psy", 0.3),)), None)
    empty = EvaluatedPerformance(0, 0, None, 0.7)
    assert evaluate([], {}, empty, [], limits) == []
