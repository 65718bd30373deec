"""Compiled trees give LightGBM's scores bit for bit: every split kind, missing type and default direction,
NaNs, zeros and values within 1e-35 of zero, unseen and negative categories, infinities; a single-leaf
tree; fewer iterations than the model holds; threads; and a fallback when nothing can compile."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pytest

from models_ml.inference.batch import compiled_trees as ct

ROWS = 6_000


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Numeric features with NaNs and exact zeros, a categorical of 70 values (a bitset of three words)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 5))
    x[rng.random(ROWS) < 0.15, 0] = np.nan
    x[rng.random(ROWS) < 0.25, 1] = 0.0
    x[:, 2] = rng.integers(0, 70, ROWS)
    x[:, 3] = np.round(x[:, 3], 1)
    y = (x[:, 1] + np.nan_to_num(x[:, 0], nan=1.5) + (x[:, 2] % 7 == 0) * 1.5 + 0.4 * x[:, 3]
         + rng.normal(scale=0.7, size=ROWS)) > 0.5
    return x, y.astype(int)


def probes(seed: int = 1) -> np.ndarray:
    """Rows built to hit every edge: NaN, +-0.0, tiny values, infinities, negative, fractional and unseen
    categories, and values equal to the model's thresholds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5_000, 5)) * 2
    specials = np.array([np.nan, 0.0, -0.0, 1e-36, -1e-36, 1e-30, np.inf, -np.inf])
    for j in range(5):
        rows = rng.random(len(x)) < 0.3
        x[rows, j] = rng.choice(specials, rows.sum())
    x[:1000, 2] = rng.choice([-3.0, -0.5, 0.0, 0.7, 5.0, 33.0, 64.0, 69.0, 70.0, 95.0, 1e12, np.nan], 1000)
    return x


def train(params: dict, x: np.ndarray, y: np.ndarray, rounds: int = 30) -> lgb.Booster:
    data = lgb.Dataset(x, label=y, categorical_feature=[2], params={"verbosity": -1}, free_raw_data=False)
    base = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 20, "min_data_per_group": 10,
            "cat_smooth": 1, "max_cat_to_onehot": 4, "learning_rate": 0.2, "verbosity": -1, "seed": 7,
            "deterministic": True, "num_threads": 1}
    return lgb.train({**base, **params}, data, num_boost_round=rounds)


def with_thresholds(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """``x`` with rows whose values sit exactly on the model's numeric thresholds."""
    model = booster.dump_model()
    hits = []
    for info in model["tree_info"]:
        stack = [info["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                if node["decision_type"] == "<=":
                    row = np.array(x[len(hits) % len(x)])
                    row[node["split_feature"]] = node["threshold"]
                    hits.append(row)
                stack += [node["left_child"], node["right_child"]]
    return np.vstack([x, *hits])


@pytest.mark.parametrize("params", [
    {},                                           # missing type NaN where NaNs were seen, None elsewhere
    {"zero_as_missing": True},                    # missing type Zero
    {"use_missing": False},                       # missing type None everywhere
    {"max_cat_to_onehot": 100},                   # one-hot categorical splits
    {"sigmoid": 0.7},                             # a sigmoid parameter
], ids=["nan-missing", "zero-missing", "no-missing", "one-hot-categories", "sigmoid"])
def test_compiled_scores_equal_lightgbm_bit_for_bit(tmp_path, params):
    x, y = training_data()
    booster = train(params, x, y)
    compiled = ct.compile_trees(booster, None, tmp_path)
    assert compiled is not None
    for matrix in (x, probes(), with_thresholds(booster, probes(2))):
        expected = booster.predict(matrix, num_threads=1)
        assert np.array_equal(compiled.predict(matrix, 1), expected)
        assert np.array_equal(compiled.predict(matrix, 2), expected)


def test_fewer_iterations_than_the_model_holds_and_a_single_leaf_tree(tmp_path):
    x, y = training_data()
    booster = train({}, x, y)
    compiled = ct.compile_trees(booster, 7, tmp_path)
    assert np.array_equal(compiled.predict(probes(), 2), booster.predict(probes(), num_iteration=7))
    constant = train({"min_data_in_leaf": ROWS}, x, y, rounds=3)  # nothing can split: one leaf per tree
    assert "split_feature" not in constant.dump_model()["tree_info"][0]["tree_structure"]
    assert np.array_equal(ct.compile_trees(constant, None, tmp_path).predict(probes(), 1), constant.predict(probes()))


def test_a_model_is_compiled_once_and_pickles_as_its_library(tmp_path):
    x, y = training_data()
    booster = train({}, x, y)
    first = ct.compile_trees(booster, None, tmp_path)
    libraries = list(tmp_path.glob("trees-*.so"))
    assert len(libraries) == 1 and first.path == libraries[0]
    modified = libraries[0].stat().st_mtime_ns
    again = ct.compile_trees(booster, None, tmp_path)
    assert again.path == first.path and first.path.stat().st_mtime_ns == modified
    restored = pickle.loads(pickle.dumps(again))
    assert np.array_equal(restored.predict(x, 2), booster.predict(x))
    with pytest.raises(ValueError, match="5 feature columns expected"):
        restored.predict(x[:, :4])
    assert restored.predict(x[:0]).shape == (0,)


def test_a_killed_compilation_leaves_no_scratch_behind_but_a_live_or_other_hosts_one_is_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    abandoned = tmp_path / f"{ct._scratch_prefix(int(dead.stdout))}abc123"
    live = tmp_path / f"{ct._scratch_prefix(os.getpid())}def456"
    elsewhere = tmp_path / f".compiling-{dead.stdout.strip()}@other-host.example-ghi789"  # not ours to judge
    for folder in (abandoned, live, elsewhere):
        folder.mkdir()
        (folder / "trees.c").write_text("/* half written */")
    x, y = training_data()
    booster = train({}, x, y)
    compiled = ct.compile_trees(booster, None, tmp_path)
    assert np.array_equal(compiled.predict(x), booster.predict(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, compiled.path.name])


def test_no_compiler_or_an_uncovered_model_keeps_lightgbm(tmp_path, monkeypatch):
    x, y = training_data()
    regression = lgb.train({"objective": "regression", "verbosity": -1}, lgb.Dataset(x, label=y), 3)
    assert ct.compile_trees(regression, None, tmp_path) is None
    monkeypatch.setattr(ct.shutil, "which", lambda name: None)
    assert ct.compile_trees(train({}, x, y), None, tmp_path) is None
    assert not list(tmp_path.glob("trees-*.so"))
