"""The online encoder builds exactly the matrix training's encoder gives LightGBM, and the online scorer
(LightGBM's single-row fast path for a few rows, booster.predict for more) gives identical scores."""

from __future__ import annotations

import concurrent.futures
import gc

import numpy as np
import pyarrow as pa
import pytest

from models_ml.inference.online.serving import encode
from models_ml.inference.online.serving.encode import FAST_PATH_MAX_ROWS, Encoder, Scorer
from models_ml.training import train as tr


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


def _rows_and_expected(model: tr.Model) -> tuple[list[dict], np.ndarray]:
    """Test rows with the awkward cases (unseen category, missing values, all zeros, all missing) and the
    scores training's own encoder path gives them."""
    test = _table(500, 3)
    rows = test.select(model.spec.features).to_pylist()
    rows[0]["category"] = "never-seen"  # unseen category -> missing, as in prepare_features
    rows[1]["amount"] = None
    rows[2].update(amount=0.0, count=0, is_blocked=False)  # zeros: LightGBM's row reader drops them
    rows[3] = dict.fromkeys(model.spec.features)
    expected = model.predict(pa.Table.from_pylist(rows, schema=test.select(model.spec.features).schema))
    assert "category" in model.spec.categories
    return rows, expected


def test_scores_equal_the_training_encoder_path(model):
    rows, expected = _rows_and_expected(model)
    scorer = Scorer(model)
    np.testing.assert_array_equal(scorer.predict(rows), expected)  # a large batch: booster.predict
    for size in (1, 2, FAST_PATH_MAX_ROWS):  # a request's few rows: the single-row fast path
        for start in range(0, 40, size):
            np.testing.assert_array_equal(scorer.predict(rows[start:start + size]), expected[start:start + size])
    assert scorer.predict([]).shape == (0,)


def test_the_fast_path_is_safe_across_threads(model):
    rows, expected = _rows_and_expected(model)
    scorer = Scorer(model)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        scores = list(pool.map(lambda row: scorer.predict([row])[0], rows))
    np.testing.assert_array_equal(np.array(scores), expected)


def test_the_fast_config_is_freed_with_its_scorer(model, monkeypatch):
    freed = []
    monkeypatch.setattr(encode, "_free_fast_config", lambda handle, booster: freed.append(handle))
    scorer = Scorer(model)
    handle = scorer._single_row._handle
    del scorer
    gc.collect()
    assert freed == [handle]


def test_a_non_numeric_value_for_a_numeric_feature_is_refused(model):
    with pytest.raises(ValueError, match="'amount'.*needs a number"):
        Encoder(model.spec).matrix([{"amount": "12", "count": 1, "category": "food", "is_blocked": False}])
