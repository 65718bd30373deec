"""What the monitoring tests share (importable as `monitoring_testing`): the model, its scored days."""

from __future__ import annotations

import datetime as dt

MODEL = "flight_delay"
DAYS = (dt.date(2013, 1, 9), dt.date(2013, 1, 10))  # after the training range: what the champion scored
SMALL = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "min_data_per_group": 10,
         "early_stopping_rounds": 10}
LENIENT = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0, "champion_tolerance": 1.0}
