"""Training (determinism, saved encodings, config) and evaluation (metrics, slices, gate, plots) on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from models_ml.training import evaluate as ev
from models_ml.training import train as tr

FEATURES = ["x", "hour", "carrier", "is_weekend"]
FAST = tr.TrainConfig(num_boost_round=40, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20,
                      min_data_per_group=10, learning_rate=0.2, num_threads=1)


def toy_table(n: int, seed: int, carriers=("AA", "BB", "CC")) -> pa.Table:
    """A target that depends on a number, an hour and a carrier; some values missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    hour = rng.integers(0, 24, n)
    carrier = rng.choice(list(carriers), n)
    effect = {"AA": -1.0, "BB": 0.0, "CC": 1.0, "DD": 0.5}
    logit = 1.5 * x + 0.05 * (hour - 12) + np.array([effect[c] for c in carrier])
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    carriers_with_nulls = [None if i % 50 == 0 else c for i, c in enumerate(carrier)]
    return pa.table({
        "flight_id": [f"f{i}" for i in range(n)],
        "x": pa.array([None if i % 37 == 0 else v for i, v in enumerate(x)], pa.float64()),
        "hour": pa.array(hour, pa.int32()),
        "carrier": pa.array(carriers_with_nulls, pa.string()),
        "is_weekend": pa.array(rng.random(n) < 0.3),
        "is_delayed": pa.array(y),
        "origin": pa.array(rng.choice(["X", "Y"], n)),
    })


@pytest.fixture(scope="module")
def data():
    return toy_table(1500, 1), toy_table(400, 2), toy_table(600, 3)


def fit(train, validation, config=FAST) -> tr.Model:
    return tr.train_model(train, validation, features=FEATURES, target="is_delayed", config=config,
                          feature_view="toy", feature_view_version=1)


# --------------------------------------------------------------------------------------------------
# Training


def test_training_is_deterministic(data):
    train, validation, test = data
    first, second = fit(train, validation), fit(train, validation)
    assert np.array_equal(first.predict(test), second.predict(test))
    assert first.booster.model_to_string() == second.booster.model_to_string()
    assert first.params["deterministic"] and first.params["num_threads"] == 1


def test_early_stopping_uses_validation(data):
    train, validation, _ = data
    model = fit(train, validation, tr.config_from_mapping(tr.TrainConfig, FAST.as_dict(),
                                                          {"num_boost_round": 400, "early_stopping_rounds": 5}))
    assert 0 < model.best_iteration < 400
    assert set(model.best_scores()) == {"train", "validation"}


def test_string_columns_become_categories_fixed_from_training(data):
    train, validation, _ = data
    model = fit(train, validation)
    assert model.spec.features == FEATURES
    assert model.spec.categories == {"carrier": ["AA", "BB", "CC"]}
    frame = tr.prepare_features(train, model.spec)
    assert list(frame.columns) == FEATURES
    assert str(frame["carrier"].dtype) == "category"
    assert list(frame["carrier"].cat.categories) == ["AA", "BB", "CC"]
    assert frame["x"].dtype == np.float64 and frame["x"].isna().sum() == train["x"].null_count
    assert set(frame["is_weekend"].unique()) <= {0.0, 1.0}


def test_saved_encodings_are_applied_and_unseen_categories_become_missing(data, tmp_path):
    train, validation, test = data
    model = fit(train, validation)
    tr.save_model(model, tmp_path / "m")
    loaded = tr.load_model(tmp_path / "m")
    assert loaded.spec == model.spec
    assert np.array_equal(loaded.predict(test), model.predict(test))

    unseen = toy_table(200, 4, carriers=("DD",))  # a carrier training never saw
    frame = tr.prepare_features(unseen, loaded.spec)
    assert frame["carrier"].isna().all()
    as_null = unseen.set_column(unseen.schema.get_field_index("carrier"), "carrier", pa.nulls(200, pa.string()))
    assert np.array_equal(loaded.predict(unseen), loaded.predict(as_null))


def test_the_scoring_matrix_gives_the_bits_of_lightgbms_own_frame_conversion(data):
    # Model.predict builds LightGBM's float matrix straight from Arrow (feature_matrix); LightGBM's own
    # path from the training frame (categories -> codes -> NaN for -1) must give the very same scores.
    train, validation, test = data
    model = fit(train, validation)
    unseen = toy_table(300, 5, carriers=("AA", "DD"))  # unseen categories and NULLs, next to known ones
    for table in (test, unseen, pa.concat_tables([test.slice(0, 7), unseen.slice(0, 5)])):
        via_frame = model.booster.predict(tr.prepare_features(table, model.spec), num_iteration=model.best_iteration)
        assert np.array_equal(model.predict(table), via_frame)
        assert np.array_equal(model.predict(table, num_threads=2), via_frame)
    matrix = tr.feature_matrix(unseen, model.spec)
    assert matrix.flags.c_contiguous and matrix.shape == (300, len(FEATURES))
    carrier = matrix[:, FEATURES.index("carrier")]
    assert np.isnan(carrier[[c in (None, "DD") for c in unseen["carrier"].to_pylist()]]).all()
    assert model.predict(unseen.slice(0, 0)).shape == (0,)
    reused = np.full((400, len(FEATURES)), -1.0)
    filled = tr.feature_matrix(unseen, model.spec, out=reused)
    assert np.shares_memory(filled, reused) and np.array_equal(filled, matrix, equal_nan=True)
    with pytest.raises(ValueError, match=r"out has shape \(10, 4\)"):
        tr.feature_matrix(unseen, model.spec, out=np.empty((10, len(FEATURES))))


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_batch_scoring_in_chunks_gives_the_same_scores(data, monkeypatch, chunk_rows):
    from models_ml.inference.batch import predict as pr
    train, validation, test = data
    model = fit(train, validation)
    monkeypatch.setattr(pr, "SCORE_CHUNK_ROWS", chunk_rows)
    timings = pr.Timings()
    assert np.array_equal(pr.score(model, test, num_threads=2, timings=timings), model.predict(test))
    assert set(timings.seconds) == {"prepare_features", "predict"}
    assert pr.score(model, test.slice(0, 0)).shape == (0,)


def test_inputs_in_another_column_order_give_the_same_predictions(data):
    train, validation, test = data
    model = fit(train, validation)
    shuffled = test.select(list(reversed(test.column_names)))
    assert np.array_equal(model.predict(shuffled), model.predict(test))
    with pytest.raises(ValueError, match="lacks the model's features"):
        model.predict(test.drop_columns(["hour"]))


def test_config_layers_are_typed_and_strict(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[train]\nnum_leaves = 15\nlearning_rate = 0.1\n")
    config = tr.config_from_mapping(tr.TrainConfig, tr.read_config("m", path)["train"], {"num_leaves": "9"})
    assert (config.num_leaves, config.learning_rate, config.seed) == (9, 0.1, 42)
    assert tr.config_from_mapping(tr.TrainConfig, {"categorical_features": "hour, x"}).categorical_features == ("hour", "x")
    with pytest.raises(ValueError, match="no setting 'num_leafs'"):
        tr.config_from_mapping(tr.TrainConfig, {"num_leafs": 3})
    with pytest.raises(ValueError, match="not an integer"):
        tr.config_from_mapping(tr.TrainConfig, {"num_leaves": "many"})
    assert tr.read_config("no_such_model") == {}
    shipped = tr.read_config("flight_delay")
    tr.config_from_mapping(tr.TrainConfig, shipped.get("train"))
    tr.config_from_mapping(ev.GateConfig, shipped.get("gate"))
    tr.config_from_mapping(ev.EvaluationConfig, shipped.get("evaluation"))


def test_forced_categorical_integer_feature(data):
    train, validation, test = data
    config = tr.config_from_mapping(tr.TrainConfig, FAST.as_dict(), {"categorical_features": ["hour"]})
    model = fit(train, validation, config)
    assert model.spec.categories["hour"] == sorted(str(h) for h in set(train["hour"].to_pylist()))
    assert model.predict(test).shape == (test.num_rows,)


# --------------------------------------------------------------------------------------------------
# Metrics on hand-computable cases

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_metrics_by_hand():
    # Pairs (positive, negative): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok -> 3 of 4.
    assert ev.roc_auc(Y, P) == pytest.approx(0.75)
    # Ranked: 0.8 (pos, P=1, R=.5), 0.4 (neg), 0.35 (pos, P=2/3, R=1) -> .5*1 + .5*2/3.
    assert ev.average_precision(Y, P) == pytest.approx(0.5 + 1 / 3)
    assert ev.log_loss(Y, P) == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    assert ev.brier_score(Y, P) == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # Two bins: [0, .5) holds .1, .4, .35 (mean .2833, rate 1/3); [.5, 1] holds .8 (rate 1).
    bins = ev.reliability(Y, P, bins=2)
    assert [b.rows for b in bins] == [3, 1]
    assert bins[0].mean_score == pytest.approx(0.85 / 3) and bins[0].positive_rate == pytest.approx(1 / 3)
    assert ev.expected_calibration_error(Y, P, bins=2) == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)


def test_metric_edge_cases():
    assert ev.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert ev.roc_auc([1, 1], [0.2, 0.3]) is None and ev.average_precision([0, 0], [0.2, 0.3]) is None
    assert ev.roc_auc([0, 1], [0.9, 0.1]) == 0.0
    assert ev.average_precision([1, 0, 1], [0.9, 0.9, 0.1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert ev.log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))  # clipped, finite
    with pytest.raises(ValueError):
        ev.roc_auc([0, 2], [0.1, 0.2])


def test_slices_and_worst_slice():
    y = np.array([0, 1] * 10 + [0, 1] * 10 + [1] * 5 + [0, 1])
    p = np.r_[np.tile([0.1, 0.9], 10), np.tile([0.9, 0.1], 10), np.full(5, 0.5), [0.3, 0.6]]
    carrier = ["good"] * 20 + ["bad"] * 20 + ["one_class"] * 5 + ["tiny"] * 2
    evaluated, skipped = ev.slice_metrics(y, p, {"carrier": pa.array(carrier)}, min_rows=5)
    assert {s.value: s.metrics.roc_auc for s in evaluated} == {"bad": 0.0, "good": 1.0}
    assert {(s.value, s.reason) for s in skipped} == {("one_class", "a single class"), ("tiny", "fewer than 5 rows")}
    worst = ev.worst_slice(evaluated)
    assert (worst.column, worst.value) == ("carrier", "bad")
    assert ev.worst_slice(evaluated, "log_loss").value == "bad"


# --------------------------------------------------------------------------------------------------
# Evaluating a model, the gate, plots


def test_evaluate_model_with_slices_and_champion(data):
    train, validation, test = data
    model = fit(train, validation)
    weak = fit(train.drop_columns(["x"]).append_column("x", pa.nulls(train.num_rows, pa.float64())), validation)
    evaluation = ev.evaluate_model(model, test, ["carrier", "origin"], ev.EvaluationConfig(min_slice_rows=50),
                                   champion=weak, champion_version=7)
    assert evaluation.metrics.rows == test.num_rows
    assert evaluation.metrics.roc_auc == pytest.approx(ev.roc_auc(evaluation.y_true, model.predict(test)))
    assert {(s.column, s.value) for s in evaluation.slices} >= {("carrier", "AA"), ("origin", "X"), ("origin", "Y")}
    assert evaluation.worst_slice.metrics.roc_auc == min(s.metrics.roc_auc for s in evaluation.slices)
    assert evaluation.champion.version == 7 and evaluation.champion.metrics.roc_auc < evaluation.metrics.roc_auc
    assert set(evaluation.as_dict()) >= {"metrics", "slices", "worst_slice", "champion", "calibration"}


def _evaluation(roc_auc=0.8, ece=0.02, worst=0.7, champion=None) -> ev.Evaluation:
    def metrics(auc, calibration=0.02):
        return ev.Metrics(rows=1000, positives=200, positive_rate=0.2, mean_score=0.2, roc_auc=auc, pr_auc=0.5,
                          log_loss=0.4, brier=0.12, ece=calibration)
    return ev.Evaluation(
        dataset="test", metrics=metrics(roc_auc, ece), calibration=[],
        slices=[ev.SliceMetrics("carrier", "AA", metrics(worst))], skipped_slices=[],
        worst_slice=ev.SliceMetrics("carrier", "AA", metrics(worst)),
        champion=ev.ChampionComparison(3, metrics(champion)) if champion is not None else None,
    )


def test_gate_thresholds():
    gate = ev.GateConfig(min_roc_auc=0.7, max_ece=0.05, min_worst_slice_roc_auc=0.6, champion_tolerance=0.01)
    assert ev.check_gate(_evaluation(), gate).passed
    failed = ev.check_gate(_evaluation(roc_auc=0.65, ece=0.08, worst=0.55), gate)
    assert not failed.passed
    assert {c.name for c in failed.failures} == {"roc_auc", "ece", "worst_slice_roc_auc"}
    assert "carrier=AA" in failed.summary()
    assert ev.check_gate(_evaluation(roc_auc=0.65), ev.GateConfig(min_roc_auc=None, max_ece=None,
                                                                   min_worst_slice_roc_auc=None)).passed


def test_gate_against_the_champion():
    gate = ev.GateConfig(min_roc_auc=0.5, champion_tolerance=0.01)
    assert ev.check_gate(_evaluation(roc_auc=0.80, champion=0.805), gate).passed  # within tolerance
    worse = ev.check_gate(_evaluation(roc_auc=0.80, champion=0.82), gate)
    assert not worse.passed and [c.name for c in worse.failures] == ["vs_champion"]
    by_loss = ev.GateConfig(min_roc_auc=None, champion_metric="log_loss", champion_tolerance=0.0)
    assert ev.check_gate(_evaluation(champion=0.9), by_loss).passed  # same log loss: not worse


def test_plots_are_written_with_the_version(data, tmp_path):
    train, validation, test = data
    model = fit(train, validation)
    evaluation = ev.evaluate_model(model, test, ["carrier"], champion=model, champion_version=1)
    paths = ev.save_plots(evaluation, tmp_path, "toy", 2)
    assert sorted(paths) == ["calibration", "importance", "pr", "roc"]
    for kind, path in paths.items():
        assert path.name == f"toy_v2_{kind}.png" and path.read_bytes()[:4] == b"\x89PNG"
    markdown = ev.summary_markdown("toy", 2, evaluation, ev.check_gate(evaluation), "champion")
    assert "toy v2" in markdown and "roc_auc" in markdown and "champion v1" in markdown
