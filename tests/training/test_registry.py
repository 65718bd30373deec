"""The model registry: registration with lineage, SQL tables, aliases, promotion, rollback, loading."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from models_ml.core.settings import load_settings
from models_ml.training import evaluate as ev
from models_ml.training import registry
from models_ml.training import train as tr


def toy(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    carrier = rng.choice(["AA", "BB"], n)
    y = rng.random(n) < 1 / (1 + np.exp(-(2 * x + (carrier == "BB"))))
    return pa.table({"x": x, "carrier": carrier, "is_delayed": y})


@pytest.fixture(scope="module")
def trained():
    train, validation, test = toy(600, 1), toy(200, 2), toy(300, 3)
    config = tr.TrainConfig(num_boost_round=20, early_stopping_rounds=5, num_leaves=4, min_data_in_leaf=10,
                            min_data_per_group=5)
    model = tr.train_model(train, validation, features=["x", "carrier"], target="is_delayed", config=config,
                           feature_view="toy", feature_view_version=2)
    evaluation = ev.evaluate_model(model, test, ["carrier"], ev.EvaluationConfig(min_slice_rows=20))
    return model, evaluation, ev.check_gate(evaluation, ev.GateConfig(min_roc_auc=0.6)), test


@pytest.fixture()
def settings(tmp_path):
    return load_settings(tmp_path / "home")


LINEAGE = registry.Lineage(
    feature_view="toy", feature_view_version=2, feature_group_versions={"fg_a": 1, "fg_b": 3},
    snapshot_id="snap_toy_0123456789ab", snapshot_hash="f" * 64, split={"test_start": "2024-01-03"},
)


def register(settings, trained, **kwargs) -> registry.ModelVersion:
    model, evaluation, gate, _ = trained
    return registry.register_model(settings, "toy", model, evaluation, gate, LINEAGE,
                                   train_config={"num_leaves": 4}, **kwargs)


def test_register_records_files_lineage_and_metrics(settings, trained):
    _, evaluation, gate, _ = trained
    version = register(settings, trained, validation_metrics={"roc_auc": 0.7},
                       write_artifacts=lambda d, v: ev.save_plots(evaluation, d, "toy", v))
    assert version.version == 1 and version.model_dir == settings.models_dir / "toy" / "1"
    assert {p.name for p in version.model_dir.iterdir()} >= {
        "model.txt", "model_spec.json", "evaluation.json", "toy_v1_roc.png", "toy_v1_calibration.png"}
    assert not any(p.name.startswith(".staging") for p in (settings.models_dir / "toy").iterdir())
    assert (version.feature_view, version.feature_view_version) == ("toy", 2)
    assert version.feature_group_versions == {"fg_a": 1, "fg_b": 3}
    assert version.snapshot_id == "snap_toy_0123456789ab" and version.snapshot_hash == "f" * 64
    assert version.code_version  # a git commit here, else the package version
    assert version.features == ["x", "carrier"] and version.gate_passed == gate.passed
    assert version.params["seed"] == 42 and version.train_config == {"num_leaves": 4}
    metrics = registry.get_metrics(settings, "toy", 1)
    assert metrics["test"]["roc_auc"] == pytest.approx(evaluation.metrics.roc_auc)
    assert metrics["validation"] == {"roc_auc": 0.7}
    slices = registry.get_slice_metrics(settings, "toy", 1)
    assert {s["slice_value"] for s in slices} == {"AA", "BB"}

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:  # plain SQL works too
        row = con.execute("select snapshot_id, feature_group_versions from registry.model_versions").fetchone()
        assert row[0] == "snap_toy_0123456789ab" and json.loads(row[1]) == {"fg_a": 1, "fg_b": 3}
        assert con.execute("select count(*) from registry.model_slice_metrics where metric = 'roc_auc'").fetchone()[0] == 2


def test_versions_increase_and_list(settings, trained):
    assert [register(settings, trained).version for _ in range(3)] == [1, 2, 3]
    assert [v.version for v in registry.list_versions(settings, "toy")] == [1, 2, 3]
    assert registry.get_version(settings, "toy").version == 3
    assert registry.list_models(settings) == ["toy"]
    with pytest.raises(registry.RegistryError, match="no version 9"):
        registry.get_version(settings, "toy", 9)


def test_failed_registration_leaves_nothing(settings, trained):
    def broken(directory, version):
        raise OSError("disk full")

    with pytest.raises(OSError):
        register(settings, trained, write_artifacts=broken)
    assert registry.list_versions(settings, "toy") == []
    assert not (settings.models_dir / "toy" / "1").exists()
    assert list((settings.models_dir / "toy").iterdir()) == []
    assert register(settings, trained).version == 1  # the number was not burnt


def test_promote_rollback_and_history(settings, trained):
    for _ in range(3):
        register(settings, trained)
    registry.promote(settings, "toy", 1, publish=False)
    registry.promote(settings, "toy", 2, publish=False)
    registry.promote(settings, "toy", 3, publish=False)
    assert registry.get_aliases(settings, "toy") == {"champion": 3}

    change = registry.rollback(settings, "toy", publish=False)
    assert (change.previous_version, change.version) == (3, 2)
    assert registry.rollback(settings, "toy", publish=False).version == 1  # walks back, does not toggle 2 <-> 3
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(settings, "toy", publish=False)
    registry.promote(settings, "toy", 3, publish=False)
    assert registry.rollback(settings, "toy", publish=False).version == 1

    history = registry.alias_history(settings, "toy", "champion")
    assert [(h["action"], h["previous_version"], h["version"]) for h in history] == [
        ("promote", None, 1), ("promote", 1, 2), ("promote", 2, 3), ("rollback", 3, 2), ("rollback", 2, 1),
        ("promote", 1, 3), ("rollback", 3, 1),
    ]
    assert registry.resolve(settings, "toy").version == 1
    assert registry.get_version(settings, "toy", 1).aliases == ("champion",)


def test_challenger_and_promotion_clears_it(settings, trained):
    register(settings, trained)
    register(settings, trained)
    registry.promote(settings, "toy", 1, publish=False)
    registry.set_alias(settings, "toy", "challenger", 2, reason="gate failed")
    assert registry.get_aliases(settings, "toy") == {"champion": 1, "challenger": 2}
    registry.promote(settings, "toy", 2, publish=False)
    assert registry.get_aliases(settings, "toy") == {"champion": 2}
    with pytest.raises(registry.RegistryError):
        registry.promote(settings, "toy", 5, publish=False)
    with pytest.raises(registry.RegistryError, match="no 'champion' alias"):
        registry.resolve(settings, "other")


def test_resolve_and_load_by_alias(settings, trained):
    model, _, _, test = trained
    register(settings, trained)
    register(settings, trained)
    registry.promote(settings, "toy", 2, publish=False)
    version, loaded = registry.load(settings, "toy", "champion")
    assert version.version == 2
    assert np.array_equal(loaded.predict(test), model.predict(test))
    assert loaded.spec == model.spec
    assert registry.resolve(settings, "toy", "v1").version == 1
    assert registry.resolve(settings, "toy", "latest").version == 2
