"""The README's main job: run the pipelines end to end on the real 2013 flights, and summarise."""

from __future__ import annotations

import time

from models_ml import registry
from models_ml.settings import Settings

MODEL = "flight_delay"


def _say(message: str) -> None:
    print(f"[fti demo] {message}", flush=True)


def _has_champion(settings: Settings) -> bool:
    try:
        registry.resolve(settings, MODEL, "champion")
    except registry.RegistryError:
        return False
    return True


def run_demo(settings: Settings, through: str = "2013-11-30") -> int:
    """Land the real flights through `through`, build every feature group, train and promote the model."""
    from flows.feature_pipeline import feature_pipeline
    from flows.training_pipeline import training

    started = time.perf_counter()
    settings.ensure_home()
    _say(f"state directory: {settings.home}")
    _say(f"1/2 feature pipeline: landing real flights day by day through {through}, then dbt build (tests included)")
    result = feature_pipeline(through=through, home=str(settings.home))
    _say(f"landed {sum(result['rows_landed'].values()):,} new raw rows; tables:")
    for table, rows in sorted(result["rows_built"].items()):
        print(f"    {table:<48}{rows:>10,}")
    quarantined = result["rows_quarantined"]
    _say(f"quarantined rows: {sum(quarantined.values()):,} {quarantined if quarantined else ''}")

    if _has_champion(settings):
        _say("2/2 training: a champion is already registered; skipping (retrain with `fti train`)")
    else:
        _say("2/2 training pipeline: point-in-time snapshot (Ibis), LightGBM, evaluation, gate, registry")
        summary = training(view=MODEL, home=str(settings.home))
        metrics = summary["metrics"]
        _say(f"registered {MODEL} v{summary['version']} as {summary['alias']} "
             f"(gate {'passed' if summary['gate_passed'] else 'failed'}); snapshot {summary['snapshot_id']}")
        _say("test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        if summary["worst_slice"]:
            _say(f"worst slice: {summary['worst_slice']}")

    _say(f"done in {time.perf_counter() - started:.0f} s. Warehouse: {settings.warehouse_path}")
    _say("explore: .venv/bin/fti features list | .venv/bin/fti models list | .venv/bin/fti models show flight_delay")
    return 0
