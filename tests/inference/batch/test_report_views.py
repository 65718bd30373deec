"""The model report: every section a data scientist looks for, with real numbers, on the toy warehouse.

Two versions of the toy model are trained on the same snapshot (v2 with fewer trees, compared with the
champion v1 at registration, as the training pipeline does); a day is scored by batch inference; the
report of v2 must then show the label, both baselines, the previous champion, the score distribution by
class, the threshold view, calibration with counts, slices and missing features in training and scoring.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fti_testing import make_toy_warehouse, toy_catalog

from models_ml.core.settings import load_settings
from models_ml.core.time import TimeRange, day_window
from models_ml.definitions.catalog import TrainingConfig
from models_ml.inference.batch import pipeline as bp
from models_ml.inference.batch.report import DAILY_PNG, write_report
from models_ml.offline.store import opened
from models_ml.training import evaluate as ev
from models_ml.training import plots, registry
from models_ml.training import report as rp
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import TimeSplit, load_splits

FAST = tr.TrainConfig(num_boost_round=40, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20,
                      min_data_per_group=10, learning_rate=0.2)
OPEN_GATE = ev.GateConfig(min_roc_auc=0.0, max_ece=1.0, min_worst_slice_roc_auc=0.0, champion_tolerance=1.0)


def register(settings, view, config: tr.TrainConfig) -> registry.ModelVersion:
    """Train on the toy snapshot, evaluate beside the current champion, register and promote."""
    with opened(settings) as store:
        info = sn.build_snapshot(store, view, TimeRange.of("2024-01-01", "2024-01-20"))
        splits = load_splits(store, info, TimeSplit(fractions=(0.6, 0.2, 0.2)))
    model = tr.train_model(splits.train, splits.validation, features=info.feature_columns, target=info.target,
                           config=config, feature_view=view.name, feature_view_version=view.version)
    champion = (registry.load(settings, "toy")[0].version, registry.load(settings, "toy")[1]) \
        if registry.CHAMPION in registry.get_aliases(settings, "toy") else None
    evaluation = ev.evaluate_model(model, splits.test, info.slices, ev.EvaluationConfig(min_slice_rows=20),
                                   champion=champion[1] if champion else None,
                                   champion_version=champion[0] if champion else None)
    gate = ev.check_gate(evaluation, OPEN_GATE)
    lineage = registry.Lineage(feature_view=view.name, feature_view_version=view.version,
                               feature_group_versions=info.feature_group_versions, snapshot_id=info.snapshot_id,
                               snapshot_hash=info.content_hash, split=splits.as_dict(), code_version="test")
    version = registry.register_model(settings, "toy", model, evaluation, gate, lineage,
                                      write_artifacts=lambda d, n: ev.save_plots(evaluation, d, "toy", n))
    registry.promote(settings, "toy", version.version, publish=False)
    return registry.get_version(settings, "toy", version.version)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Two versions, a scored day, and the report of the champion v2."""
    settings = load_settings(tmp_path_factory.mktemp("report") / "home")
    settings.ensure_home()
    make_toy_warehouse(settings.warehouse_path, gaps=True)
    catalog = toy_catalog()
    # the report evaluates as training does, with the view's evaluation settings (toy slices are small)
    view = dataclasses.replace(catalog.view("toy"), training=TrainingConfig(evaluation=(("min_slice_rows", 20),)))
    catalog.views["toy"] = view
    first = register(settings, view, FAST)
    second = register(settings, view, dataclasses.replace(FAST, num_boost_round=8))
    bp.predict_window(settings, "toy", day_window("2024-01-24", 1), catalog=catalog, num_threads=1)
    path = write_report(settings, view, second, ("predictions", "toy"), {"predictions.toy": 1})
    return settings, view, first, second, path, path.read_text()


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def test_report_compares_with_the_previous_champion_and_computed_baselines(reported):
    settings, view, first, second, path, text = reported
    assert path == settings.reports_dir / "toy" / "report.md"
    metrics = section(text, "## Test metrics")
    header = metrics.splitlines()[2]
    assert header.startswith("| metric | this model | previous champion v1 | base rate | one feature: ")
    roc = next(line for line in metrics.splitlines() if line.startswith("| roc_auc |")).split("|")[2:-1]
    model_auc, champion_auc, base_auc, one_feature_auc = (float(v) for v in roc)
    # the registry's own numbers for both versions on the same test rows
    assert model_auc == pytest.approx(registry.get_metrics(settings, "toy", 2)["test"]["roc_auc"], abs=1e-4)
    assert champion_auc == pytest.approx(registry.get_metrics(settings, "toy", 1)["test"]["roc_auc"], abs=1e-4)
    assert base_auc == 0.5  # a constant score ranks nothing
    assert 0.5 < one_feature_auc < 1.0  # the carrier's delay share alone says a lot on this data
    assert "previous champion** v1, the champion when this version was trained" in metrics
    assert "the training split's positive rate" in metrics and "highest validation ROC-AUC" in metrics


def test_first_version_says_it_had_no_champion(reported):
    settings, view, first, *_ = reported
    report = rp.build_model_report(settings, view, first, settings.home / "v1_report")
    assert any("previous champion**: none" in line for line in report.head)
    assert "| metric | this model | base rate | one feature: " in "\n".join(report.head)


def test_label_scores_thresholds_and_slices_have_numbers(reported):
    settings, view, _, second, path, text = reported
    label = section(text, "## What is predicted")
    assert "`is_delayed` of `label_toy`" in label and "`prediction_at`" in label
    assert "positive rate**: train 0." in label and "test 0." in label

    scores = section(text, "## Score distribution by class")
    positive = next(line for line in scores.splitlines() if line.startswith("| positive (1) |"))
    negative = next(line for line in scores.splitlines() if line.startswith("| negative (0) |"))
    assert float(positive.split("|")[3]) > float(negative.split("|")[3])  # the model separates the classes

    thresholds = section(text, "## Thresholds")
    top = [line.split("|")[1:-1] for line in thresholds.splitlines() if line.startswith("| 1% |")
           or line.startswith("| 50% |")]
    assert len(top) == 2 and all(float(row[5]) > 0 for row in top)  # lift computed at 1 % and 50 %
    assert float(top[0][3]) >= float(top[1][3])  # precision falls as more rows are flagged

    slices = section(text, "## Slices")
    assert "carrier_code=" in slices and "origin_airport_code=" in slices
    for kind in ("roc", "pr", "calibration", "importance", "scores", "thresholds", "lift", "slices", "missing"):
        png = path.parent / f"toy_v2_{kind}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"]({png.name})" in text, kind
    assert f"]({DAILY_PNG})" in text and (path.parent / DAILY_PNG).stat().st_size > 0


def test_calibration_shows_counts_and_starts_at_zero(reported, tmp_path):
    *_, text = reported
    calibration = section(text, "## Calibration")
    rows = [line.split("|") for line in calibration.splitlines() if line.startswith("| [")]
    assert len(rows) == 10 and sum(int(r[2].replace(",", "")) for r in rows) > 0
    drawn = []
    original = plots.save
    try:  # keep the figure to read its axes
        plots.save = lambda figure, path: drawn.append(figure) or original(figure, path)
        plots.calibration(tmp_path / "c.png", "t", [(0.0, 0.5, 30, 0.2, 0.1), (0.5, 1.0, 10, 0.7, 0.8)], "m")
    finally:
        plots.save = original
    axes, counts = drawn[0].axes
    assert axes.get_ylim()[0] == 0 and counts.get_ylim()[0] == 0
    assert {t.get_text() for t in axes.texts} == {"n=30", "n=10"}


def test_missing_features_in_training_against_scoring(reported):
    settings, view, _, second, path, text = reported
    missing = section(text, "## Missing features")
    assert "| feature group | train | test | scored |" in missing
    carrier = next(line for line in missing.splitlines() if line.startswith("| fg_carrier__stats |")).split("|")
    # carrier DD has no stats: a quarter of the flights, in training and in scoring alike
    assert [float(v.strip().rstrip("%")) for v in carrier[2:5]] == pytest.approx([25.0, 25.0, 25.0], abs=2.0)
    assert "Scored rows with a group missing:" in missing


def test_one_feature_baseline_picks_the_informative_feature():
    import pyarrow as pa

    rng = np.random.default_rng(0)
    n = 3000
    signal, noise = rng.uniform(size=n), rng.uniform(size=n)
    y = (rng.uniform(size=n) < signal).astype(np.int8)
    table = pa.table({"signal": signal, "noise": noise, "cat": pa.array(["a", "b"] * (n // 2)), "y": y})
    spec = tr.ModelSpec("v", 1, "y", ["noise", "signal", "cat"], {"cat": ["a", "b"]})
    baseline = rp.one_feature_baseline(spec, table.slice(0, 2000), table.slice(2000, 500), table.slice(2500))
    assert baseline.name == "one feature: signal"
    assert baseline.metrics.roc_auc > 0.7
    prior = rp.base_rate_baseline(y[:2000], y[2500:])
    assert prior.metrics.roc_auc == 0.5 and prior.metrics.log_loss > baseline.metrics.log_loss


def test_threshold_curve_and_top_fractions_by_hand():
    y = np.array([1, 0, 1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1])
    curve = ev.threshold_curve(y, p, points=5)  # thresholds 0, 0.25, 0.5, 0.75, 1
    assert curve.flagged.tolist() == pytest.approx([1, 4 / 6, 3 / 6, 2 / 6, 0])
    assert curve.recall.tolist() == pytest.approx([1, 2 / 3, 2 / 3, 1 / 3, 0])
    assert curve.precision[:4].tolist() == pytest.approx([0.5, 0.5, 2 / 3, 0.5]) and np.isnan(curve.precision[4])
    top = ev.top_fractions(y, p, (0.34, 1.0))
    assert [(t.rows, t.positives, t.threshold) for t in top] == [(3, 2, 0.6), (6, 3, 0.1)]
    assert top[0].lift == pytest.approx((2 / 3) / 0.5) and top[1].lift == pytest.approx(1.0)
