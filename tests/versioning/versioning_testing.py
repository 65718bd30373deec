"""Helpers of the versioning tests (importable as `versioning_testing`)."""

from __future__ import annotations

from online_testing import FAST, FLIGHT_RANGE, FLIGHT_SPLIT

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import load_catalog
from models_ml.offline.store import opened
from models_ml.training import evaluate as ev
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import load_splits

MODEL = "flight_delay"


def register_on_view(settings: Settings, view_version: int, *, seed: int = 42) -> registry.ModelVersion:
    """Train flight_delay on version ``view_version`` of its view (the slice's first days, the online tests'
    small config, a gate that passes anything) and register it, without an alias."""
    view = load_catalog(settings).view(MODEL, view_version)
    with opened(settings) as store:
        info = sn.build_snapshot(store, view, FLIGHT_RANGE)
        splits = load_splits(store, info, FLIGHT_SPLIT)
    config = tr.TrainConfig(**{**FAST.as_dict(), "seed": seed, "categorical_features": ()})
    model = tr.train_model(splits.train, splits.validation, features=info.feature_columns, target=info.target,
                           config=config, feature_view=view.name, feature_view_version=view.version)
    evaluation = ev.evaluate_model(model, splits.test, [], ev.EvaluationConfig(min_slice_rows=10))
    gate = ev.check_gate(evaluation, ev.GateConfig(min_roc_auc=0.0, max_ece=1.0, min_worst_slice_roc_auc=0.0))
    lineage = registry.Lineage(
        feature_view=view.name, feature_view_version=view.version,
        feature_group_versions=info.feature_group_versions, snapshot_id=info.snapshot_id,
        snapshot_hash=info.content_hash, code_version="test",
    )
    return registry.register_model(settings, MODEL, model, evaluation, gate, lineage)
