"""The README's main job: run the pipelines end to end on the real 2013 flights, and summarise."""

from __future__ import annotations

import datetime as dt
import time

from models_ml.settings import Settings


def _say(message: str) -> None:
    print(f"[fti demo] {message}", flush=True)


def run_demo(settings: Settings, through: str = "2013-11-30") -> int:
    """Land the real flights through `through`, build every feature group, then train if available."""
    from flows.feature_pipeline import feature_pipeline

    started = time.perf_counter()
    settings.ensure_home()
    _say(f"state directory: {settings.home}")
    _say(f"feature pipeline: landing real flights day by day through {through}, then dbt build (tests included)")
    result = feature_pipeline(through=through, home=str(settings.home))
    _say(f"landed {sum(result['rows_landed'].values()):,} new raw rows; tables:")
    for table, rows in sorted(result["rows_built"].items()):
        print(f"    {table:<48}{rows:>10,}")
    quarantined = result["rows_quarantined"]
    _say(f"quarantined rows: {sum(quarantined.values()):,} {quarantined if quarantined else ''}")

    try:
        from flows.training_pipeline import training
    except ImportError:
        training = None
    if training is not None:
        _say("training pipeline: point-in-time snapshot, LightGBM, evaluation, registry")
        summary = training(home=str(settings.home), cutoff=dt.date.fromisoformat(through).isoformat())
        _say(f"training: {summary}")

    _say(f"done in {time.perf_counter() - started:.0f} s. Warehouse: {settings.warehouse_path}")
    _say("explore: .venv/bin/fti features list   |   .venv/bin/fti features show flight_delay")
    return 0
