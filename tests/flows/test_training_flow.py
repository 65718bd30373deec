"""The training flow end to end on a small generated warehouse: register always, promote only past the gate."""

from __future__ import annotations

import pytest
from fti_testing import make_toy_warehouse, toy_catalog

from models_ml.core.settings import load_settings
from models_ml.training import registry

pytestmark = pytest.mark.slow


def test_training_flow_registers_promotes_and_keeps_challengers(tmp_path, monkeypatch, prefect_harness):
    import flows.training_pipeline as pipeline
    from models_ml.training import pipeline as steps

    home = tmp_path / "home"
    home.mkdir()
    make_toy_warehouse(home / "warehouse.duckdb")  # 3,000 flights over ~27 days
    monkeypatch.setattr(steps, "load_catalog", lambda settings: toy_catalog())  # the toy view, not dbt's
    arguments = dict(view="toy", start="2024-01-01", end="2024-01-28", validation_start="2024-01-18",
                     test_start="2024-01-23", overrides={"num_boost_round": 60, "num_leaves": 7},
                     home=str(home))
    lenient = {"min_roc_auc": 0.6, "max_ece": 0.2, "min_worst_slice_roc_auc": 0.5}

    first = pipeline.training(**arguments, gate_overrides=lenient)
    assert (first["version"], first["alias"], first["gate_passed"]) == (1, "champion", True)
    assert first["metrics"]["roc_auc"] > 0.6 and first["champion_version"] is None
    assert first["worst_slice"]["column"] in ("carrier_code", "origin_airport_code")

    second = pipeline.training(**arguments, gate_overrides={**lenient, "min_roc_auc": 0.99})
    assert (second["version"], second["alias"], second["gate_passed"]) == (2, "challenger", False)
    assert second["snapshot_id"] == first["snapshot_id"] and second["snapshot_reused"]
    assert second["champion_version"] == 1
    assert second["metrics"] == first["metrics"]  # same snapshot, same config: the same model
    assert second["champion_metrics"]["roc_auc"] == pytest.approx(first["metrics"]["roc_auc"])

    settings = load_settings(home)
    assert registry.get_aliases(settings, "toy") == {"champion": 1, "challenger": 2}
    version = registry.get_version(settings, "toy", 2)
    assert version.snapshot_id == first["snapshot_id"] and not version.gate_passed
    assert (version.model_dir / "toy_v2_roc.png").exists()
    assert "champion_on_test" in registry.get_metrics(settings, "toy", 2)
    # the challenger's pointer is published for canary or shadow serving, pinned like the champion's
    from models_ml.training.champion_pointer import challenger_path, read_pointer_file

    assert read_pointer_file(challenger_path(settings, "toy")).version == 2
