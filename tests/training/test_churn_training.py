"""The churn model, trained through the library on the default generated year (examples/churn, ChurnConfig()),
passes its view's promotion gate: the features carry the signal the generator put in, honestly (a learnable
but noisy problem, not a separable one)."""

from __future__ import annotations

import datetime as dt

import pytest
from fti_testing import land_churn, ticking_clock

from examples.churn.generator import ChurnConfig
from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.training import pipeline as tp
from models_ml.training import registry


@pytest.mark.slow
def test_the_default_year_trains_a_model_that_passes_the_gate(tmp_path):
    settings = load_settings(tmp_path / "home")
    config = ChurnConfig()
    land_churn(settings, config.last_day, ticking_clock(dt.datetime(2026, 1, 3, tzinfo=dt.timezone.utc)),
               config=config)
    build(settings, ["build", "--select", *load_catalog(settings).domain("churn").dbt_selection.split()])

    run = tp.run_training(settings, tp.plan_training(settings, "customer_churn"))
    result = run.as_dict()
    metrics = result["metrics"]
    print(f"\ncustomer_churn v{result['version']}: test ROC-AUC {metrics['roc_auc']:.4f}, "
          f"PR-AUC {metrics['pr_auc']:.4f}, ECE {metrics['ece']:.4f}, positives {metrics['positives']} of "
          f"{metrics['rows']}, rows {result['rows']}; worst slice {result['worst_slice']}; gate: {result['gate']}")
    assert run.gate.passed, result["gate"]
    assert 0.72 <= metrics["roc_auc"] < 0.92  # learnable, not trivially separable
    assert 0.02 < metrics["positive_rate"] < 0.10  # a few percent of active customers leave in a month
    assert set(result["rows"]) == {"train", "validation", "test"} and min(result["rows"].values()) > 5_000
    assert run.alias == registry.CHAMPION
