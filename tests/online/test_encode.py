"""The online encoder builds exactly the matrix training's encoder gives LightGBM: identical scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from models_ml import train as tr
from models_ml.online.encode import Encoder, predict


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 30.0, n)
    count = rng.integers(0, 20, n)
    category = rng.choice(["food", "travel", "games", "fuel"], n)
    blocked = rng.random(n) < 0.1
    y = (amount / 100 + (category == "games") * 0.8 + blocked * 0.5 + rng.normal(0, 0.3, n)) > 1.0
    amount_list = [None if i % 17 == 0 else float(a) for i, a in enumerate(amount)]
    category_list = [None if i % 23 == 0 else str(c) for i, c in enumerate(category)]
    return pa.table({
        "amount": pa.array(amount_list, pa.float64()),
        "count": pa.array(count, pa.int32()),
        "category": pa.array(category_list, pa.string()),
        "is_blocked": pa.array(blocked),
        "is_fraud": pa.array(y),
    })


@pytest.fixture(scope="module")
def model() -> tr.Model:
    config = tr.TrainConfig(num_boost_round=30, num_leaves=7, min_data_in_leaf=10, min_data_per_group=5,
                            early_stopping_rounds=5, learning_rate=0.3)
    return tr.train_model(_table(3000, 1), _table(1000, 2), features=["amount", "count", "category", "is_blocked"],
                          target="is_fraud", config=config)


def test_scores_equal_the_training_encoder_path(model):
    test = _table(500, 3)
    rows = test.select(model.spec.features).to_pylist()
    rows[0]["category"] = "never-seen"  # unseen category -> missing, as in prepare_features
    rows[1]["amount"] = None
    expected = model.predict(pa.Table.from_pylist(rows, schema=test.select(model.spec.features).schema))
    assert "category" in model.spec.categories
    np.testing.assert_array_equal(predict(model, Encoder(model.spec), rows), expected)


def test_a_non_numeric_value_for_a_numeric_feature_is_refused(model):
    with pytest.raises(ValueError, match="'amount'.*needs a number"):
        Encoder(model.spec).matrix([{"amount": "12", "count": 1, "category": "food", "is_blocked": False}])
