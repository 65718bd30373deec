"""A view's training config lives beside its definition (the exposure's `meta.fti.training`): the catalog
reads it strictly, and `read_config` gives what the TOML files inside the package used to give."""

from __future__ import annotations

import dataclasses
import json

import pytest

from models_ml.definitions.catalog import CatalogError, TrainingConfig, catalog_from_manifest, load_catalog
from models_ml.training import evaluate as ev
from models_ml.training import train as tr
from models_ml.training.champion_pointer import view_from_dict, view_to_dict

# What models_ml/config/flight_delay.toml and card_fraud.toml held, value for value (and type for type).
FLIGHT_DELAY = {
    "train": {"learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 200, "feature_fraction": 0.8,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_boost_round": 2000,
              "early_stopping_rounds": 50, "seed": 42, "num_threads": 1},
    "split": {"start": "2013-01-01", "end": "2013-12-01", "validation_start": "2013-09-01",
              "test_start": "2013-10-01"},
    "evaluation": {"calibration_bins": 10, "min_slice_rows": 500},
    "gate": {"min_roc_auc": 0.70, "max_ece": 0.03, "min_worst_slice_roc_auc": 0.60, "champion_metric": "roc_auc",
             "champion_tolerance": 0.005},
}
CARD_FRAUD = {
    "train": {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 200, "feature_fraction": 0.9,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "num_boost_round": 2000,
              "early_stopping_rounds": 100, "seed": 42, "num_threads": 1},
    "split": {"start": "2024-01-08", "end": "2024-03-30", "validation_start": "2024-03-01",
              "test_start": "2024-03-15"},
    "evaluation": {"calibration_bins": 10, "min_slice_rows": 2000},
    "gate": {"min_roc_auc": 0.90, "min_pr_auc": 0.40, "max_ece": 0.01, "min_worst_slice_roc_auc": 0.75,
             "champion_metric": "pr_auc", "champion_tolerance": 0.01},
}


@pytest.fixture(scope="module")
def manifest(built_home) -> dict:
    load_catalog(built_home)
    return json.loads(built_home.manifest_path.read_text())


def _typed(config: dict) -> str:
    """JSON keeps 1 and 1.0 apart, so equal texts mean the same values of the same types in the same order."""
    return json.dumps(config)


@pytest.mark.parametrize(("view", "expected"), [("flight_delay", FLIGHT_DELAY), ("card_fraud", CARD_FRAUD)])
def test_read_config_gives_what_the_toml_files_gave(built_home, view, expected):
    assert _typed(tr.read_config(view, settings=built_home)) == _typed(expected)
    assert _typed(tr.read_config(view, catalog=load_catalog(built_home))) == _typed(expected)
    config = tr.read_config(view, settings=built_home)
    tr.config_from_mapping(tr.TrainConfig, config["train"])
    tr.config_from_mapping(ev.EvaluationConfig, config["evaluation"])
    tr.config_from_mapping(ev.GateConfig, config["gate"])


def test_read_config_is_empty_for_a_view_the_project_does_not_declare(built_home):
    assert tr.read_config("no_such_view", settings=built_home) == {}


def _with_training(manifest: dict, view: str, training) -> dict:
    changed = json.loads(json.dumps(manifest))
    exposure = next(e for e in changed["exposures"].values() if e["name"] == view)
    if training is None:
        exposure["config"]["meta"]["fti"].pop("training", None)
    else:
        exposure["config"]["meta"]["fti"]["training"] = training
    return changed


def test_a_view_without_training_config_trains_on_the_defaults(manifest):
    view = catalog_from_manifest(_with_training(manifest, "flight_delay", None)).view("flight_delay")
    assert view.training == TrainingConfig() and view.training.as_dict() == {}
    assert tr.read_config("flight_delay", catalog=catalog_from_manifest(_with_training(manifest, "flight_delay", {
        "gate": {"min_roc_auc": 0.5}}))) == {"gate": {"min_roc_auc": 0.5}}


@pytest.mark.parametrize(("training", "message"), [
    ({**FLIGHT_DELAY, "trian": {"num_leaves": 3}},
     "feature view flight_delay: unknown key meta.fti.training.trian; known: train, split, evaluation, gate"),
    ({"split": {"start": "2013-01-01", "validation_begin": "2013-09-01"}},
     "feature view flight_delay: unknown key meta.fti.training.split.validation_begin; known: start, end, "
     "validation_start, test_start, fractions"),
    ({"train": {"num_leaves": {"min": 3}}},
     "feature view flight_delay: meta.fti.training.train.num_leaves must be a number, string, boolean or a list of "
     "them, got {'min': 3}"),
    ({"train": [["num_leaves", 3]]},
     "feature view flight_delay: meta.fti.training.train must be a mapping of settings, got [['num_leaves', 3]]"),
    ("fast", "feature view flight_delay: meta.fti.training must be a mapping of sections (train, split, evaluation, "
             "gate), got 'fast'"),
])
def test_a_bad_training_config_fails_the_catalog_in_one_line(manifest, training, message):
    with pytest.raises(CatalogError) as raised:
        catalog_from_manifest(_with_training(manifest, "flight_delay", training))
    assert str(raised.value) == message


def test_the_config_rides_in_the_view_immutable_and_survives_the_champion_pointer(manifest):
    training = {**CARD_FRAUD, "train": {**CARD_FRAUD["train"], "categorical_features": ["merchant_category"]},
                "split": {"start": "2024-01-08", "end": "2024-03-30", "fractions": [0.6, 0.2, 0.2]}}
    catalog = catalog_from_manifest(_with_training(manifest, "card_fraud", training))
    view = catalog.view("card_fraud")
    assert view.training.split == (("start", "2024-01-08"), ("end", "2024-03-30"), ("fractions", (0.6, 0.2, 0.2)))
    assert hash(view.training) == hash(dataclasses.replace(view.training))
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.training.train = ()  # type: ignore[misc]
    config = tr.read_config("card_fraud", catalog=catalog)
    assert config["split"]["fractions"] == [0.6, 0.2, 0.2]  # lists again, as a TOML file gives them
    config["split"]["fractions"].append(1.0)  # the caller's copy: the view is unchanged
    assert tr.read_config("card_fraud", catalog=catalog)["split"]["fractions"] == [0.6, 0.2, 0.2]
    for each in [view, *catalog.views.values()]:
        assert view_from_dict(json.loads(json.dumps(view_to_dict(each)))) == each
