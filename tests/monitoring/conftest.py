"""A real home to monitor: the ten-day flights slice with a champion and its batch predictions."""

from __future__ import annotations

import pytest
from fti_testing import copy_home
from monitoring_testing import DAYS, LENIENT, MODEL, SMALL

from models_ml.core.time import day_window
from models_ml.inference.batch.pipeline import predict_window
from models_ml.training import pipeline as tp
from models_ml.training import registry


@pytest.fixture(scope="session")
def monitored_home(built_home, tmp_path_factory):
    """`built_home` with a flight_delay champion trained on its first eight days (split recorded) and its
    batch predictions of the last two. Tests write only monitoring tables
    and files of their own in it."""
    settings = copy_home(built_home, tmp_path_factory.mktemp("monitor") / "home")
    plan = tp.plan_training(settings, MODEL, start="2013-01-01", end="2013-01-09", fractions=[0.6, 0.2, 0.2],
                            overrides=SMALL, gate_overrides=LENIENT)
    assert tp.run_training(settings, plan).alias == registry.CHAMPION
    predict_window(settings, MODEL, day_window(DAYS[0], 2), num_threads=1)
    return settings
