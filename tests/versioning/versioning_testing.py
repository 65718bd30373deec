"""Helpers of the versioning tests (importable as `versioning_testing`)."""

from __future__ import annotations

from fti_testing import fit_for_registry
from online_testing import FAST, FLIGHT_RANGE, FLIGHT_SPLIT

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import load_catalog
from models_ml.training import registry
from models_ml.training import train as tr

MODEL = "flight_delay"


def register_on_view(settings: Settings, view_version: int, *, seed: int = 42) -> registry.ModelVersion:
    """Train flight_delay on version ``view_version`` of its view (the slice's first days, the online tests'
    small config, a gate that passes anything) and register it, without an alias."""
    config = tr.TrainConfig(**{**FAST.as_dict(), "seed": seed, "categorical_features": ()})
    fitted = fit_for_registry(settings, load_catalog(settings).view(MODEL, view_version), FLIGHT_RANGE,
                              FLIGHT_SPLIT, config)
    return registry.register_model(settings, MODEL, *fitted)
