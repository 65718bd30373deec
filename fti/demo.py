"""The README's main job: the three pipelines end to end on the real 2013 flights, then a summary.

1. feature pipeline: land eleven months day by day, build every feature group (tests included);
2. training pipeline: snapshot, train, evaluate, register and promote the flight-delay model (skipped when
   a champion is already registered, so a second demo run changes nothing but the new runs);
3. the following week, night by night: batch inference scores tomorrow's flights from the published
   schedule, before they depart; then the feature pipeline lands the day (its outcomes, and the next
   day's schedule);
4. the predictions joined to their outcomes (ROC-AUC per day), and the model's report (one Markdown file
   with its plots beside it, FTI_HOME/reports/<model>/report.md), which the closing summary points to;
5. monitoring of the week: drift against the training reference, performance, freshness and alerts into
   the ``monitoring`` schema, and its report (retraining is only reported: the demo trains once).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models_ml.core.settings import Settings
from models_ml.training import registry

DOMAIN, MODEL = "flights", "flight_delay"
ZONE = "America/New_York"  # a flights day is a New York day: the schedule is published per local day


def _say(message: str) -> None:
    print(f"[fti demo] {message}", flush=True)


def _has_champion(settings: Settings) -> bool:
    try:
        registry.resolve(settings, MODEL, registry.CHAMPION)
    except registry.RegistryError:
        return False
    return True


def run_demo(
    settings: Settings,
    through: str = "2013-11-30",
    predict_days: int = 7,
    training_options: Mapping[str, Any] | None = None,
) -> int:
    """Run the demo; `training_options` (time range, split, gate overrides) go to the training flow."""
    from flows.batch_inference import batch_inference
    from flows.feature_pipeline import feature_pipeline
    from flows.monitoring import monitoring
    from flows.training_pipeline import training
    from models_ml.definitions.catalog import load_catalog
    from models_ml.features.pipeline import count_rows
    from models_ml.inference.batch.outcomes import daily_outcomes
    from models_ml.inference.batch.predict import predictions_relation
    from models_ml.inference.batch.report import write_report
    from models_ml.offline.store import opened

    started = time.perf_counter()
    settings.ensure_home()
    first_predicted = dt.date.fromisoformat(through) + dt.timedelta(days=1)
    last_predicted = first_predicted + dt.timedelta(days=predict_days - 1)
    _say(f"state directory: {settings.home}")

    _say(f"1/5 feature pipeline: land real flights day by day through {through}, dbt build (tests included)")
    result = feature_pipeline(through=through, home=str(settings.home), domain=DOMAIN)
    _say(f"    landed {sum(result['rows_landed'].values()):,} new raw rows, "
         f"quarantined {sum(result['rows_quarantined'].values()):,} {result['rows_quarantined'] or ''}")

    if _has_champion(settings):
        _say("2/5 training: a champion is already registered, skipped (retrain with `fti train`)")
    else:
        _say("2/5 training pipeline: point-in-time snapshot, LightGBM, evaluation per slice, gate, registry")
        summary = training(view=MODEL, home=str(settings.home), **dict(training_options or {}))
        _say(f"    registered {MODEL} v{summary['version']} as {summary['alias'] or 'candidate'} "
             f"(gate {'passed' if summary['gate_passed'] else 'failed'}), snapshot {summary['snapshot_id']}")
    champion = registry.resolve(settings, MODEL, registry.CHAMPION)

    _say(f"3/5 night by night, {first_predicted}..{last_predicted}: score tomorrow's flights from the published "
         f"schedule with {MODEL} v{champion.version}, before they depart; then land the day")
    scored_rows = flagged_rows = 0
    for offset in range(predict_days):
        day = first_predicted + dt.timedelta(days=offset)
        scored = batch_inference(day=day.isoformat(), model=MODEL, home=str(settings.home), timezone=ZONE)
        scored_rows, flagged_rows = scored_rows + scored["rows"], flagged_rows + scored["flagged_rows"]
        _say(f"    {day}: scored {scored['rows']:,} scheduled flights the night before "
             f"({scored['flagged_rows']:,} with a feature group missing)")
        feature_pipeline(through=day.isoformat(), home=str(settings.home), domain=DOMAIN)
    predictions_table = scored["table"]

    _say("4/5 the predictions joined to their outcomes, and the report")
    catalog = load_catalog(settings)
    view = catalog.view(MODEL)
    with opened(settings, read_only=True) as store:
        outcomes = daily_outcomes(store, view, predictions_relation(MODEL), ZONE)
    for day in outcomes:
        auc = "-" if day.roc_auc is None else f"{day.roc_auc:.4f}"
        _say(f"    {day.day}: {day.scored:,} scored, {day.with_outcome:,} outcomes known, ROC-AUC {auc}")
    relations = sorted({ref.group.qualified_relation for ref in view.features}
                       | {view.label.qualified_relation, ".".join(view.scoring_relation), predictions_table})
    rows, _ = count_rows(settings, relations)
    report = write_report(settings, view, champion, predictions_relation(MODEL), rows, ZONE)

    _say(f"5/5 monitoring of the week: drift, performance, freshness, alerts (fti monitor {MODEL})")
    monitored = monitoring(model=MODEL, days=predict_days, home=str(settings.home), retrain=False,
                           timezone=ZONE)
    worst_drift = next((f for f in monitored["drift"] if f["psi"] is not None), None)
    _say(f"    {len(monitored['alerts'])} alert(s); worst PSI "
         + (f"{worst_drift['psi']:.2f} ({worst_drift['feature']})" if worst_drift else "-")
         + f"; retraining {monitored['retrain']}")

    metrics = registry.get_metrics(settings, MODEL, champion.version).get("test", {})
    worst = registry.get_slice_metrics(settings, MODEL, champion.version)[:1]
    print()
    print(f"  {'table':<48}{'rows':>10}")
    for relation, count in rows.items():
        print(f"  {relation:<48}{count:>10,}")
    print()
    print(f"  {MODEL} v{champion.version} (champion), test metrics: "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k in {"roc_auc", "pr_auc", "log_loss", "brier", "ece"}))
    if worst:
        print(f"  worst slice: {worst[0]['slice_column']}={worst[0]['slice_value']} ROC-AUC {worst[0]['roc_auc']:.4f}")
    print(f"  predictions: {predictions_table} ({scored_rows:,} rows scored before departure this run, "
          f"{flagged_rows:,} flagged for missing features)")
    print(f"  report:      {report}")
    print(f"               {_report_contents(report)}")
    print(f"  monitoring:  {monitored['report']}")
    print(f"  warehouse:   {settings.warehouse_path}")
    print(f"  models:      {champion.model_dir}")
    print()
    _say(f"done in {time.perf_counter() - started:.0f} s. Read the report: {report}")
    _say("Explore: .venv/bin/fti features list | .venv/bin/fti models list | .venv/bin/fti models show flight_delay")
    return 0


def _report_contents(report: Path) -> str:
    """What the report holds, in one line: its plots and its sections' headings."""
    headings = [line[3:].split(" (")[0].split(":")[0] for line in report.read_text().splitlines()
                if line.startswith("## ")]
    plots = len(list(report.parent.glob("*.png")))
    return f"{plots} plots beside it; " + "; ".join(headings)
