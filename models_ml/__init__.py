"""fti: a declarative, SQL-first ML system on the Feature / Training / Inference pipeline architecture.

What a user calls from Python (everything else may move between releases):

* ``load_settings`` / ``Settings``: where a run writes (``FTI_HOME``) and which engine and stores it uses;
* ``load_catalog`` / ``Catalog`` / ``FeatureGroup`` / ``FeatureView``: the dbt project's feature groups
  and feature views, read from its manifest;
* ``open_offline_store`` / ``OfflineStore``: the one door to the engine that holds the warehouse;
* ``point_in_time_join`` / ``FeatureSource``: Feast's point-in-time semantics as one lazy Ibis expression;
* ``TimeRange``: a half-open UTC window;
* ``build_snapshot`` / ``TimeSplit`` / ``load_splits``: immutable training snapshots and their time splits;
* ``train_model`` / ``Model``: LightGBM with its input contract;
* ``registry``: model versions with lineage, aliases, promote and rollback;
* ``predict_window``: batch inference of a window with a registered model.

Names are imported on first use, so ``import models_ml`` stays cheap for the online service.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Settings": "models_ml.core.settings",
    "load_settings": "models_ml.core.settings",
    "TimeRange": "models_ml.core.time",
    "Catalog": "models_ml.definitions.catalog",
    "FeatureGroup": "models_ml.definitions.catalog",
    "FeatureView": "models_ml.definitions.catalog",
    "load_catalog": "models_ml.definitions.catalog",
    "OfflineStore": "models_ml.offline.store",
    "open_offline_store": "models_ml.offline.store",
    "FeatureSource": "models_ml.offline.pit",
    "point_in_time_join": "models_ml.offline.pit",
    "build_snapshot": "models_ml.training.snapshot",
    "TimeSplit": "models_ml.training.splits",
    "load_splits": "models_ml.training.splits",
    "Model": "models_ml.training.train",
    "train_model": "models_ml.training.train",
    "predict_window": "models_ml.inference.batch.pipeline",
}
_MODULES: dict[str, str] = {"registry": "models_ml.training.registry"}

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models_ml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
