"""`fti monitor NAME`: the whole monitoring run of a model through the monitoring flow, its summary, and the
report read back from the monitoring tables (drift heatmap, score against the reference, performance over
time beside the test split, freshness, alerts); and the retraining trigger through a real deployment."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from fti_testing import copy_home, query
from monitoring_testing import DAYS, MODEL
from test_monitor_alerts import _shift_top_group_feature

from fti.cli import main
from fti.monitor_commands import route
from models_ml.core.time import TimeRange
from models_ml.monitoring.pipeline import monitor
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.report import drift_matrix, report_dir
from models_ml.monitoring.scores import SCORE_BINS, score_distribution
from models_ml.offline.store import opened
from models_ml.training import registry

pytestmark = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"


def _without_ages(page: str) -> list[str]:
    """The page but the lines with a build age (the wall clock's time since the last build)."""
    return [line for line in page.splitlines() if "last build" not in line and not line.startswith("| fg_")]


def test_a_model_name_where_a_subcommand_goes_is_the_whole_run():
    assert route(["monitor", "flight_delay", "--days", "3"]) == ["monitor", "run", "flight_delay", "--days", "3"]
    assert route(["--home", "h", "--debug", "monitor", "m"]) == ["--home", "h", "--debug", "monitor", "run", "m"]
    for unchanged in (["monitor", "drift", "--model", "m"], ["monitor", "performance"], ["monitor", "--help"],
                      ["monitor", "run", "m"], ["models", "list"], ["--home", "monitor", "list"]):
        assert route(unchanged) == unchanged


def test_fti_monitor_prints_a_summary_and_writes_the_report_from_the_tables(monitored_home, tmp_path,
                                                                            prefect_harness, capsys):
    settings = copy_home(monitored_home, tmp_path / "home")
    feature, _ = _shift_top_group_feature(settings)
    assert main(["--home", str(settings.home), "monitor", MODEL, "--days", str(len(DAYS))]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL} v1: monitored {DAYS[0]:%Y-%m-%d} 00:00 to {DAYS[-1] + dt.timedelta(days=1):%Y-%m-%d} 00:00" in out
    assert feature in out and "retraining: called for; not started (retrain=False) (--retrain starts it)" in out
    assert query(settings, "select count(*) from monitoring.retrains") == [(0,)]  # nothing claimed without --retrain

    folder = report_dir(settings, MODEL, 1)
    page = (folder / "report.md").read_text()
    for heading in ("## Alerts", "## Drift per feature over time", "## Score distribution", "## Performance over time",
                    "## Freshness of the feature groups"):
        assert heading in page
    for chart in ("drift.png", "scores.png", "performance.png"):
        assert f"]({chart})" in page and (folder / chart).read_bytes()[:8] == PNG
    assert f"| error | feature_drift | {feature} |" in page
    assert "| test split | | |" in page

    span = TimeRange(dt.datetime.combine(DAYS[0], dt.time(), dt.timezone.utc),
                     dt.datetime.combine(DAYS[-1] + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
    with opened(settings, read_only=True) as store:
        matrix = drift_matrix(store, MODEL, 1, "batch", span)
        scores = score_distribution(store, MODEL, 1, "batch", span)
    # the heatmap is the PSI rows as stored, worst feature first
    stored = dict(((f, w.astimezone(dt.timezone.utc)), v) for f, w, v in query(
        settings, "select feature, window_start, value from monitoring.feature_drift where statistic = 'psi'"))
    assert len(matrix.windows) == len(DAYS) and matrix.features[0] == feature
    assert all(matrix.psi[i, j] == stored[(f, w)] for i, f in enumerate(matrix.features)
               for j, w in enumerate(matrix.windows))
    # the score's counts cover every scored row once, the reference's every train row
    scored = query(settings, "select count(*) from predictions.flight_delay where model_version = 1")[0][0]
    reference_rows = query(settings, "select rows from monitoring.references where version = 1")[0][0]
    assert (scores.current_rows, scores.reference_rows) == (scored, reference_rows)
    assert len(scores.current) == SCORE_BINS and np.isclose(sum(scores.current), 1) and np.isclose(sum(scores.reference), 1)
    per_window = query(settings, "select window_start, sum(n) from monitoring.score_distribution group by 1 order by 1")
    drift_rows = query(settings, "select window_start, value from monitoring.feature_drift where feature = ? and "
                                 "statistic = 'rows' order by 1", [SCORE_FEATURE])
    assert [(w, int(n)) for w, n in per_window] == [(w, int(v)) for w, v in drift_rows]

    # a re-run over the same days changes no table and draws the same page
    before = query(settings, "select * exclude (computed_at) from monitoring.score_distribution order by all")
    assert main(["--home", str(settings.home), "monitor", "run", MODEL, "--days", str(len(DAYS))]) == 0
    assert _without_ages((folder / "report.md").read_text()) == _without_ages(page)
    assert query(settings, "select * exclude (computed_at) from monitoring.score_distribution order by all") == before


def test_the_trigger_runs_the_training_deployment_through_the_api_when_there_is_one(monitored_home, tmp_path,
                                                                                    prefect_harness):
    from prefect.client.orchestration import get_client

    from flows.monitoring import monitoring, retrain_parameters

    settings = copy_home(monitored_home, tmp_path / "home")
    _shift_top_group_feature(settings)
    view = registry.get_version(settings, MODEL, 1).feature_view
    with get_client(sync_client=True) as client:  # the training deployment, as `prefect deploy` registers it
        deployment_id = client.create_deployment(flow_id=client.create_flow_from_name("training"), name=view)
    try:
        versions = len(registry.list_versions(settings, MODEL))
        result = monitoring(model=MODEL, home=str(settings.home))
        assert result["retrain_claimed"] and result["retrain"] == f"scheduled training/{view}"
        ((how, flow_run_id),) = query(settings, "select how, flow_run_id from monitoring.retrains")
        assert how == "deployment"
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        assert run.deployment_id == deployment_id and run.state.is_scheduled()
        same_span = monitor(settings, MODEL, claim=False)
        assert run.parameters == retrain_parameters(same_span, str(settings.home))
        assert len(registry.list_versions(settings, MODEL)) == versions  # nothing trained in this process
    finally:  # the harness's server outlives the test: other tests must find no training deployment
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
