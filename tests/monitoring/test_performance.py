"""Performance as labels arrive, in SQL: the metrics equal the evaluation's NumPy ones on the same rows
(ties, unlabelled rows, slices), a window is replaced when more labels come, and on a real home the daily
ROC-AUC is the one `fti outcomes` reports."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from monitoring_testing import DAYS, MODEL

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import load_catalog
from models_ml.definitions.pinning import pin_view
from models_ml.inference.batch.outcomes import daily_outcomes
from models_ml.inference.batch.predict import predictions_relation
from models_ml.monitoring import performance as pf
from models_ml.monitoring.pipeline import compute_performance
from models_ml.monitoring.tables import PERFORMANCE, ensure_tables
from models_ml.offline.duckdb_store import DuckDBStore
from models_ml.offline.store import opened
from models_ml.training import evaluate as ev
from models_ml.training import registry

UTC = dt.timezone.utc
DAY1, DAY2 = TimeRange.of("2024-03-01", "2024-03-02"), TimeRange.of("2024-03-02", "2024-03-03")


def synthetic(rng, n: int, window: TimeRange, labelled_share: float) -> dict[str, np.ndarray]:
    score = np.round(rng.random(n), 2)  # rounded: many ties
    y = (rng.random(n) < score).astype(float)
    y[rng.random(n) >= labelled_share] = np.nan  # outcome not known yet
    return {"window": window, "score": score, "y": y, "carrier": rng.choice(["AA", "BB", None], n)}


def arrow(days) -> pa.Table:
    parts = []
    for d in days:
        n = len(d["score"])
        parts.append(pa.table({
            "window_start": pa.repeat(pa.scalar(d["window"].start, pa.timestamp("us", tz="UTC")), n),
            "window_end": pa.repeat(pa.scalar(d["window"].end, pa.timestamp("us", tz="UTC")), n),
            "score": pa.array(d["score"]), "y": pa.array(d["y"], pa.float64(), from_pandas=True).cast(pa.int64()),
            "slice_0": pa.array(d["carrier"], pa.string())}))
    return pa.concat_tables(parts)


def write(store, days) -> pf.PerformanceWritten:
    store.create_table("monitoring", "_labelled", arrow(days), overwrite=True)
    span = TimeRange(min(d["window"].start for d in days), max(d["window"].end for d in days))
    return pf.write_performance(store, 'monitoring."_labelled"', ["carrier"], model_name="m", version=1, span=span,
                                computed_at=dt.datetime.now(UTC))


def stored(store) -> dict[tuple, float]:
    return {(r["window_start"].astimezone(UTC), r["slice_column"], r["slice_value"], r["metric"]): r["value"]
            for r in store.query(f"select * from {PERFORMANCE}")}


@pytest.fixture()
def store():
    with DuckDBStore.in_memory() as store:
        ensure_tables(store)
        yield store


def test_the_metrics_equal_the_evaluations_on_the_labelled_rows_overall_and_per_slice(store):
    rng = np.random.default_rng(3)
    days = [synthetic(rng, 3000, DAY1, 0.8), synthetic(rng, 1200, DAY2, 0.5)]
    write(store, days)
    got = stored(store)
    for d in days:
        carriers = np.array(["(null)" if c is None else c for c in d["carrier"]], dtype=object)
        for column, value, mask in [("", "", np.ones(len(d["score"]), bool)),
                                    *(("carrier", c, carriers == c) for c in ("AA", "BB", "(null)"))]:
            key = lambda metric: (d["window"].start, column, value, metric)  # noqa: E731
            known = mask & ~np.isnan(d["y"])
            y, p = d["y"][known], d["score"][known]
            assert got[key("scored")] == mask.sum() and got[key("labelled")] == known.sum()
            assert got[key("mean_score")] == pytest.approx(d["score"][mask].mean(), rel=1e-12)
            assert got[key("positive_rate")] == pytest.approx(y.mean(), rel=1e-12)
            assert got[key("roc_auc")] == pytest.approx(ev.roc_auc(y, p), rel=1e-12)
            assert got[key("pr_auc")] == pytest.approx(ev.average_precision(y, p), rel=1e-12)
            assert got[key("log_loss")] == pytest.approx(ev.log_loss(y, p), rel=1e-12)
            assert got[key("brier")] == pytest.approx(ev.brier_score(y, p), rel=1e-12)
            assert got[key("ece")] == pytest.approx(ev.expected_calibration_error(y, p), rel=1e-9, abs=1e-15)


def test_a_window_is_recomputed_when_more_labels_arrive_and_a_single_class_has_no_auc(store):
    rng = np.random.default_rng(5)
    early = synthetic(rng, 800, DAY1, 0.3)
    first = write(store, [early])
    assert stored(store)[(DAY1.start, "", "", "label_share")] == pytest.approx(np.mean(~np.isnan(early["y"])))
    complete = dict(early, y=(rng.random(800) < early["score"]).astype(float))
    again = write(store, [complete])
    assert again.deleted == first.inserted
    assert stored(store)[(DAY1.start, "", "", "label_share")] == 1.0
    again_rows = store.query(f"select * exclude (computed_at) from {PERFORMANCE} order by all")
    write(store, [complete])
    assert store.query(f"select * exclude (computed_at) from {PERFORMANCE} order by all") == again_rows

    one_class = dict(complete, y=np.zeros(800))
    write(store, [one_class])
    got = stored(store)
    assert (DAY1.start, "", "", "roc_auc") not in got and (DAY1.start, "", "", "pr_auc") not in got
    assert got[(DAY1.start, "", "", "log_loss")] == pytest.approx(ev.log_loss(one_class["y"], one_class["score"]))


def test_a_real_champions_days_match_the_outcomes_report(monitored_home):
    run = compute_performance(monitored_home, MODEL)
    assert [w.start.date() for w in run.windows] == list(DAYS) and run.slices
    version = registry.resolve(monitored_home, MODEL)
    with opened(monitored_home, read_only=True) as store:
        view = pin_view(load_catalog(monitored_home), version)
        outcomes = daily_outcomes(store, view, predictions_relation(MODEL))
        sliced = store.query(f"select distinct slice_column from {PERFORMANCE} where slice_column <> ''")
    assert {r["slice_column"] for r in sliced} == set(view.label.slices)
    for day in outcomes:
        metrics = run.by_window[dt.datetime.combine(day.day, dt.time(0), tzinfo=UTC)]
        assert (metrics["scored"], metrics["labelled"]) == (day.scored, day.with_outcome)
        assert metrics["roc_auc"] == pytest.approx(day.roc_auc, rel=1e-12)
        assert metrics["mean_score"] == pytest.approx(day.mean_score, rel=1e-12)
