"""What a training run does, decided before it reads data: the time range, the split and the typed configs
from the view's config and the caller's overrides."""

from __future__ import annotations

import datetime as dt

import pytest

from models_ml.core.settings import load_settings
from models_ml.training import pipeline as tp

UTC = dt.timezone.utc
CONFIG = {
    "split": {"start": "2013-01-01", "end": "2013-12-01", "validation_start": "2013-09-01", "test_start": "2013-10-01"},
    "train": {"num_leaves": 63, "learning_rate": 0.05},
    "evaluation": {"min_slice_rows": 500},
    "gate": {"min_roc_auc": 0.7},
}


def plan(config=CONFIG, **arguments) -> tp.TrainingPlan:
    return tp.plan_training(load_settings("unused-home"), "flight_delay", config=config, **arguments)


def test_the_config_decides_what_the_caller_leaves_out():
    chosen = plan()
    assert (chosen.time_range.start, chosen.time_range.end) == (dt.datetime(2013, 1, 1, tzinfo=UTC),
                                                                 dt.datetime(2013, 12, 1, tzinfo=UTC))
    assert (chosen.split.validation_start, chosen.split.test_start) == (dt.datetime(2013, 9, 1, tzinfo=UTC),
                                                                         dt.datetime(2013, 10, 1, tzinfo=UTC))
    assert (chosen.train.num_leaves, chosen.train.min_data_in_leaf) == (63, 100)  # set, and the default
    assert chosen.evaluation.min_slice_rows == 500 and chosen.gate.min_roc_auc == 0.7


def test_arguments_win_over_the_config():
    chosen = plan(start="2013-02-01", end="2013-03-01", validation_start="2013-02-15", test_start="2013-02-22",
                  overrides={"num_leaves": "7"}, gate_overrides={"min_roc_auc": 0.5})
    assert chosen.time_range.start == dt.datetime(2013, 2, 1, tzinfo=UTC)
    assert chosen.split.test_start == dt.datetime(2013, 2, 22, tzinfo=UTC)
    assert chosen.train.num_leaves == 7 and chosen.train.learning_rate == 0.05  # typed; the rest from the config
    assert chosen.gate.min_roc_auc == 0.5


def test_fractions_replace_the_cut_dates():
    chosen = plan(fractions=[0.6, 0.2, 0.2])
    assert chosen.split.validation_start is None and chosen.split.fractions == (0.6, 0.2, 0.2)
    without_cuts = plan({"split": {"start": "2013-01-01", "end": "2013-02-01", "fractions": [0.5, 0.25, 0.25]}})
    assert without_cuts.split.fractions == (0.5, 0.25, 0.25)
    assert plan({"split": {"start": "2013-01-01", "end": "2013-02-01"}}).split.fractions == tp.DEFAULT_FRACTIONS


def test_no_time_range_and_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="no time range for flight_delay"):
        plan({})
    with pytest.raises(ValueError, match="TrainConfig has no setting 'num_leave'"):
        plan(overrides={"num_leave": 7})
