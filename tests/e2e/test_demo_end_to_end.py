"""The README's main job on a small slice of the real data: features -> training -> batch inference ->
report -> monitoring, twice in a row (the second run changes nothing but the new runs)."""

import pytest
from fti_testing import query

from fti.demo import run_demo
from models_ml.core.settings import load_settings
from models_ml.training import registry

SLICE_TRAINING = {
    "start": "2013-01-01",
    "end": "2013-01-22",
    "validation_start": "2013-01-15",
    "test_start": "2013-01-18",
    # a three-week model is weak: the gate's job is tested elsewhere, here the path must go through
    "gate_overrides": {"min_roc_auc": 0.5, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0},
}


@pytest.mark.slow
def test_demo_runs_end_to_end_and_is_idempotent(prefect_harness, tmp_path, capsys):
    settings = load_settings(tmp_path / "home")

    assert run_demo(settings, through="2013-01-21", predict_days=2, training_options=SLICE_TRAINING) == 0
    first = capsys.readouterr().out

    assert "registered flight_delay v1 as champion" in first
    assert "2013-01-22: scored" in first and "scheduled flights the night before" in first
    assert "2013-01-23: " in first and "outcomes known, ROC-AUC" in first
    assert "test metrics: " in first and "roc_auc" in first
    # scored night by night, one New York day at a time, from the schedule published the day before
    predicted = query(settings, """select (scheduled_departure_at at time zone 'America/New_York')::date, count(*),
                                          count(*) filter (where score between 0 and 1)
                                   from predictions."flight_delay" group by 1 order by 1""")
    assert [str(day) for day, _, _ in predicted] == ["2013-01-22", "2013-01-23"]
    assert all(n > 500 and valid == n for _, n, valid in predicted)
    report = settings.reports_dir / "flight_delay" / "report.md"
    text = report.read_text()
    assert "## Test metrics" in text and "predicted_vs_actual_by_day.png" in text
    assert (report.parent / "predicted_vs_actual_by_day.png").stat().st_size > 0
    assert any(report.parent.glob("flight_delay_v1_*.png"))

    # the week monitored: drift of every input and the score per scored day, the report drawn from it
    drift_days = query(settings, "select count(distinct window_start) from monitoring.feature_drift")[0][0]
    assert drift_days >= 2 and "monitoring of the week" in first
    monitoring_report = settings.reports_dir / "monitoring" / "flight_delay" / "v1" / "report.md"
    assert "## Drift per feature over time" in monitoring_report.read_text()
    monitoring_rows = query(settings, "select count(*) from monitoring.feature_drift")[0][0]

    rows_before = query(settings, 'select count(*) from predictions."flight_delay"')[0][0]
    assert run_demo(settings, through="2013-01-21", predict_days=2, training_options=SLICE_TRAINING) == 0
    second = capsys.readouterr().out
    assert "champion is already registered, skipped" in second
    assert [v.version for v in registry.list_versions(settings, "flight_delay")] == [1]
    assert query(settings, 'select count(*) from predictions."flight_delay"')[0][0] == rows_before
    assert query(settings, "select count(*) from monitoring.feature_drift")[0][0] == monitoring_rows
