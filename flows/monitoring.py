"""Prefect flow of monitoring: drift, performance, freshness and alerts for a model, and the retraining trigger.

Thin wiring of :func:`models_ml.monitoring.pipeline.monitor` (the rules are in its modules' docstrings):
one task computes and records everything for the last days the model scored, a second writes the report
(:mod:`models_ml.monitoring.report`), a markdown artifact lists the alerts, and when an alert calls for
retraining (and the span has not started one before, the ledger ``monitoring.retrains`` says) the training of the model's view is started: through the Prefect API as a
run of the ``training/<view>`` deployment when a server is configured (``PREFECT_API_URL``, in the environment or the profile) and has it,
else as the training flow in this process. It trains the champion's recipe on recent data: its window and
cut dates moved forward to the end of the monitored span, its hyperparameters. The training run's gate
and champion comparison decide the alias, as on any day; monitoring never promotes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from models_ml.core.settings import load_settings
from models_ml.monitoring.pipeline import MonitoringRun, monitor, record_retrain
from models_ml.monitoring.report import write_report
from models_ml.training import registry

TRAINING_FLOW = "training"  # flows/training_pipeline.py's flow; its deployments are named after the view


@task(name="monitor")
def monitor_task(home: str | None, model: str, ref: str, days: int | None, zone: str, claim: bool) -> MonitoringRun:
    run = monitor(load_settings(home), model, ref, days=days, zone=zone, claim=claim)
    logger = get_run_logger()
    for alert in run.alerts:
        logger.warning("%s %s %s: %s", alert.severity, alert.kind, alert.subject, alert.message)
    logger.info("%s v%d: %d alert(s) over %s to %s%s", run.model_name, run.version, len(run.alerts),
                run.span.start, run.span.end, f"; retrain: {run.retrain_reason}" if run.retrain_reason else "")
    return run


@task(name="monitoring report")
def report_task(home: str | None, run: MonitoringRun) -> str:
    return str(write_report(load_settings(home), run))


def _api_configured() -> bool:
    """Whether runs go to a Prefect server (PREFECT_API_URL, from the environment or the active profile),
    not to the ephemeral API a process starts for itself."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _deployment_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except Exception:  # noqa: BLE001 - not found, or the server refused: train in process instead
            return False
    return True


def retrain_parameters(run: MonitoringRun, home: str | None) -> dict[str, Any]:
    """The champion's recipe on recent data: its training window (and cut dates) moved forward to end where
    the monitored span ends, its hyperparameters; the view's gate and champion comparison as always."""
    version = registry.get_version(load_settings(home), run.model_name, run.version)
    split = version.split
    end = dt.datetime.fromisoformat(split["end"])
    shift = max(run.span.end - end, dt.timedelta(0))
    moved = {key: (dt.datetime.fromisoformat(split[key]) + shift).isoformat()
             for key in ("start", "end", "validation_start", "test_start") if split.get(key)}
    return {"view": version.feature_view, "view_version": version.feature_view_version, "home": home,
            "overrides": dict(version.train_config), **moved}


def start_training(parameters: dict[str, Any]) -> tuple[str, str | None, str]:
    """(how, flow run id, outcome): a deployment run when a server has ``training/<view>``, else in process."""
    name = f"{TRAINING_FLOW}/{parameters['view']}"
    if _api_configured() and _deployment_exists(name):
        from prefect.deployments import run_deployment

        started = run_deployment(name, parameters=parameters, timeout=0)
        return "deployment", str(started.id), f"scheduled {name}"
    from flows.training_pipeline import training

    summary = training(**parameters)
    return "in process", None, f"trained v{summary['version']} -> {summary['alias']}"


def _artifact(run: MonitoringRun, retrain: str, report: str) -> str:
    rows = [f"| {a.severity} | {a.kind} | {a.subject} | {'yes' if a.retrain else 'no'} | {a.message} |"
            for a in run.alerts]
    return "\n".join([
        f"# Monitoring {run.model_name} v{run.version}", "",
        f"Span {run.span.start:%Y-%m-%d %H:%M} to {run.span.end:%Y-%m-%d %H:%M} UTC; "
        f"evaluated days {run.evaluated.days} (ROC-AUC {run.evaluated.roc_auc or '-'}, test split "
        f"{run.evaluated.test_roc_auc or '-'}).", "",
        "| severity | kind | subject | retrains | message |", "|---|---|---|---|---|", *rows, "",
        f"Retraining: {retrain}", "", f"Report: {report}",
    ])


@flow(name="monitoring")
def monitoring(model: str, days: int | None = None, home: str | None = None, retrain: bool = True,
               version: str = registry.CHAMPION, timezone: str = "UTC") -> dict[str, Any]:
    """Monitor ``model``'s ``version`` (the champion) over its last ``days`` scored days (default: its view's
    ``monitoring.days``; days of ``timezone``, as its batch inference scores them), write the report, and start retraining when an alert calls for it
    (``retrain=False``: say so and claim nothing, so a later run of the span may still start it)."""
    run = monitor_task(home, model, version, days, timezone, retrain)
    if not run.retrain_called_for:
        outcome = "not called for"
    elif not retrain:
        outcome = "called for; not started (retrain=False)"
    elif not run.retrain_claimed:
        outcome = "called for; already started for this span"
    else:
        how, flow_run_id, outcome = start_training(retrain_parameters(run, home))
        record_retrain(load_settings(home), run, how=how, flow_run_id=flow_run_id, outcome=outcome)
    report = report_task(home, run)
    create_markdown_artifact(_artifact(run, outcome, report), key=f"monitoring-{model.replace('_', '-')}",
                             description=f"Monitoring of {model}")
    return {"model": run.model_name, "version": run.version, "span": [run.span.start.isoformat(),
                                                                      run.span.end.isoformat()],
            "alerts": [{"kind": a.kind, "subject": a.subject, "severity": a.severity, "retrain": a.retrain,
                        "message": a.message} for a in run.alerts],
            "drift": [{"feature": f.feature, "psi": f.psi, "ks": f.ks, "window": f.psi_window.isoformat()
                       if f.psi_window else None} for f in run.drift.features],
            "evaluated": {"days": run.evaluated.days, "labelled": run.evaluated.labelled,
                          "roc_auc": run.evaluated.roc_auc, "test_roc_auc": run.evaluated.test_roc_auc},
            "freshness": [{"group": g.group, "version": g.version, "level": g.level,
                           "event_age_hours": g.event_age.total_seconds() / 3600 if g.event_age else None}
                          for g in run.freshness],
            "retrain": outcome, "retrain_claimed": run.retrain_claimed, "report": report}
