"""Homes for the command-line tests: one whose dbt project is parsed (the catalog, no data), one with a
small registered model (no dbt project). Both are built once per module and read only. The helpers that
run `fti` are in cli_testing.py (a module of its own name: another directory's conftest may be the one
imported as `conftest`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from cli_testing import MODEL

from models_ml.core.settings import Settings, load_settings


@pytest.fixture(scope="module")
def parsed_home(tmp_path_factory) -> Settings:
    """A home whose dbt project is parsed (so commands read the catalog at once) and nothing is landed."""
    from models_ml.definitions.catalog import load_catalog

    settings = load_settings(tmp_path_factory.mktemp("cli") / "home")
    load_catalog(settings)
    return settings


def _table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pa.table({"x": x, "is_delayed": rng.random(rows) < 1 / (1 + np.exp(-2 * x))})


@pytest.fixture(scope="module")
def registry_home(tmp_path_factory) -> Settings:
    """A home with model `toy` registered twice (v1 its champion, v2 its challenger; both passed the gate)."""
    from models_ml.training import evaluate as ev
    from models_ml.training import registry
    from models_ml.training import train as tr

    settings = load_settings(tmp_path_factory.mktemp("cli") / "home")
    config = tr.TrainConfig(num_boost_round=5, early_stopping_rounds=2, num_leaves=4, min_data_in_leaf=5,
                            min_data_per_group=5, categorical_features=())
    model = tr.train_model(_table(200, 1), _table(100, 2), features=["x"], target="is_delayed", config=config,
                           feature_view=MODEL, feature_view_version=1)
    evaluation = ev.evaluate_model(model, _table(100, 3), [], ev.EvaluationConfig(min_slice_rows=10))
    gate = ev.check_gate(evaluation, ev.GateConfig(min_roc_auc=0.0, max_ece=1.0, min_worst_slice_roc_auc=0.0))
    lineage = registry.Lineage(feature_view=MODEL, feature_view_version=1, feature_group_versions={},
                               snapshot_id="snap_cli", snapshot_hash="0" * 64)
    for _ in range(2):
        registry.register_model(settings, MODEL, model, evaluation, gate, lineage)
    registry.promote(settings, MODEL, 1, publish=False)
    registry.set_alias(settings, MODEL, registry.CHALLENGER, 2)
    return settings
