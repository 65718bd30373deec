"""Homes for the command-line tests: one whose dbt project is parsed (the catalog, no data), one with a
small registered model (no dbt project). Both are built once per module and read only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from models_ml.core.settings import Settings, load_settings

FTI = Path(sys.executable).with_name("fti")
MODEL = "toy"


def run_fti(*args: str, home: Settings | Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`fti ARGS` in its own process (the installed entry point), with FTI_HOME set to ``home``."""
    environment = dict(os.environ)
    environment.pop("FTI_DEBUG", None)
    if home is not None:
        environment["FTI_HOME"] = str(home.home if isinstance(home, Settings) else home)
    environment.update(env or {})
    return subprocess.run([str(FTI), *args], capture_output=True, text=True, env=environment, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


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
