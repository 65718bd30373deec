"""Drift statistics in the engine, on synthetic data whose drift is known, checked against NumPy and SciPy:
a shifted feature scores high, an unchanged one near zero, an unseen category and new NULLs are counted,
and re-running a window replaces its rows and nothing else."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from models_ml.core.time import TimeRange
from models_ml.monitoring import drift as dr
from models_ml.monitoring import profile as pf
from models_ml.monitoring import reference as rf
from models_ml.monitoring.profile import CATEGORICAL, NUMERIC
from models_ml.monitoring.scores import SCORE_BINS, bin_of
from models_ml.monitoring.tables import FEATURE_DRIFT
from models_ml.offline.duckdb_store import DuckDBStore

UTC = dt.timezone.utc
DAY1 = TimeRange.of("2024-03-01", "2024-03-02")
DAY2 = TimeRange.of("2024-03-02", "2024-03-03")
KINDS = {"shifted": NUMERIC, "steady": NUMERIC, "counts": NUMERIC, "gappy": NUMERIC, "colour": CATEGORICAL}
REF_ROWS, CUR_ROWS = 4000, 1500


def reference_data(rng) -> dict[str, np.ndarray]:
    return {
        "shifted": rng.normal(0.0, 1.0, REF_ROWS),
        "steady": rng.normal(5.0, 2.0, REF_ROWS),
        "counts": rng.integers(0, 6, REF_ROWS).astype(float),  # few distinct values: tied edges and KS ties
        "gappy": np.where(rng.random(REF_ROWS) < 0.05, np.nan, rng.normal(0.0, 1.0, REF_ROWS)),
        "colour": rng.choice(["red", "green", "blue"], REF_ROWS, p=[0.5, 0.3, 0.2]).astype(object),
    }


def current_data(rng, shift: float) -> dict[str, np.ndarray]:
    """Day data: ``shifted`` moved by ``shift``, ``steady`` as in the reference, ``counts`` tilted, a
    third of ``gappy`` NULL, and a colour the reference never had."""
    return {
        "shifted": rng.normal(shift, 1.0, CUR_ROWS),
        "steady": rng.normal(5.0, 2.0, CUR_ROWS),
        "counts": rng.integers(-1, 8, CUR_ROWS).astype(float),  # -1, 6 and 7: outside the reference
        "gappy": np.where(rng.random(CUR_ROWS) < 0.35, np.nan, rng.normal(0.0, 1.0, CUR_ROWS)),
        "colour": rng.choice(["red", "green", "violet"], CUR_ROWS, p=[0.4, 0.4, 0.2]).astype(object),
    }


def arrow(data: dict[str, np.ndarray], window: TimeRange | None = None) -> pa.Table:
    columns = {}
    if window is not None:
        n = len(next(iter(data.values())))
        columns = {"window_start": pa.repeat(pa.scalar(window.start, pa.timestamp("us", tz="UTC")), n),
                   "window_end": pa.repeat(pa.scalar(window.end, pa.timestamp("us", tz="UTC")), n)}
    for name, values in data.items():
        columns[name] = pa.array(values, pa.string()) if KINDS[name] == CATEGORICAL else \
            pa.array(values, pa.float64(), from_pandas=True)  # NaN -> NULL
    return pa.table(columns)


def write(store, days: dict[TimeRange, dict[str, np.ndarray]]) -> dr.DriftWritten:
    """Drift of the given days' data (one window each) against model m v1's reference."""
    current = pa.concat_tables([arrow(data, window) for window, data in days.items()])
    store.create_table("monitoring", "_current", current, overwrite=True)
    span = TimeRange(min(w.start for w in days), max(w.end for w in days))
    return dr.write_drift(store, 'monitoring."_current"', KINDS, model_name="m", version=1, source="batch",
                          span=span, computed_at=dt.datetime.now(UTC))


def results(store) -> dict[tuple[str, dt.datetime, str], float]:
    rows = store.query(f"select feature, window_start, statistic, value from {FEATURE_DRIFT} order by all")
    return {(r["feature"], r["window_start"].astimezone(UTC), r["statistic"]): r["value"] for r in rows}


@pytest.fixture()
def store():
    rng = np.random.default_rng(7)
    with DuckDBStore.in_memory() as store:
        store.reference = reference_data(rng)
        store.days = {DAY1: current_data(rng, 1.0), DAY2: current_data(rng, 0.0)}
        rf.write_reference(store, "m", 1, arrow(store.reference), KINDS, snapshot_id="synthetic",
                           spine_time_before=None)
        yield store


# --------------------------------------------------------------------------------------------------
# The same statistics, written out in NumPy


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = dr.BINS, eps: float = dr.EPSILON) -> float:
    """Reference-quantile bins (edge k: the smallest value whose cumulative count reaches k/bins of the
    rows), a value in bin ``#edges < value``, one bin below and one above the reference's range, shares
    floored at ``eps``."""
    ref, cur = np.sort(ref[~np.isnan(ref)]), cur[~np.isnan(cur)]
    n = len(ref)
    edges = ref[[(k * n + bins - 1) // bins - 1 for k in range(1, bins)]]
    bucket = lambda values: np.where(values < ref[0], bins, np.where(  # noqa: E731
        values > ref[-1], bins + 1, np.searchsorted(edges, values, side="left")))
    p_ref = np.bincount(bucket(ref), minlength=bins + 2) / n
    p_cur = np.bincount(bucket(cur), minlength=bins + 2) / len(cur)
    p_ref, p_cur = np.maximum(p_ref, eps), np.maximum(p_cur, eps)
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def numpy_category_psi(ref: np.ndarray, cur: np.ndarray, eps: float = dr.EPSILON) -> float:
    categories = sorted(set(ref))
    bucket = lambda values: np.array([categories.index(v) if v in categories else len(categories)  # noqa: E731
                                      for v in values])
    p_ref = np.maximum(np.bincount(bucket(ref), minlength=len(categories) + 1) / len(ref), eps)
    p_cur = np.maximum(np.bincount(bucket(cur), minlength=len(categories) + 1) / len(cur), eps)
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def valid(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


# --------------------------------------------------------------------------------------------------


def test_a_shifted_feature_drifts_and_an_unchanged_one_does_not(store):
    write(store, store.days)
    got = results(store)
    shifted, calm = DAY1.start, DAY2.start
    assert got[("shifted", shifted, "psi")] > 0.25 and got[("shifted", shifted, "ks")] > 0.3
    assert got[("shifted", calm, "psi")] < 0.05 and got[("shifted", calm, "ks")] < 0.06  # day 2 is unshifted
    for day in (shifted, calm):
        assert got[("steady", day, "psi")] < 0.05 and got[("steady", day, "ks")] < 0.06
        assert got[("steady", day, "missing_rate_change")] == 0.0
        assert got[("gappy", day, "missing_rate_change")] == pytest.approx(0.30, abs=0.05)
        assert got[("colour", day, "unseen_share")] == pytest.approx(0.20, abs=0.03)
        assert got[("colour", day, "psi")] > 0.25  # "violet" lands in the unseen bucket, blue is gone
        assert got[("counts", day, "out_of_range_share")] == pytest.approx(3 / 9, abs=0.05)
        assert got[("steady", day, "rows")] == CUR_ROWS
    assert ("colour", shifted, "ks") not in got and ("steady", shifted, "unseen_share") not in got


def test_psi_ks_and_shares_equal_numpy_and_scipy_on_the_same_data(store):
    write(store, store.days)
    got = results(store)
    ref = store.reference
    for window, data in store.days.items():
        for feature in ("shifted", "steady", "counts", "gappy"):
            r, c = ref[feature], data[feature]
            assert got[(feature, window.start, "psi")] == pytest.approx(numpy_psi(r, c), rel=1e-9, abs=1e-12)
            assert got[(feature, window.start, "ks")] == pytest.approx(
                stats.ks_2samp(valid(r), valid(c)).statistic, rel=1e-12)
            low, high = np.nanmin(r), np.nanmax(r)
            assert got[(feature, window.start, "out_of_range_share")] == pytest.approx(
                np.mean((valid(c) < low) | (valid(c) > high)), rel=1e-12)
            assert got[(feature, window.start, "missing_rate_change")] == pytest.approx(
                np.isnan(c).mean() - np.isnan(r).mean(), rel=1e-12)
        assert got[("colour", window.start, "psi")] == pytest.approx(
            numpy_category_psi(ref["colour"], data["colour"]), rel=1e-9)


def test_rerunning_a_window_replaces_its_rows_and_leaves_other_windows(store):
    first = write(store, store.days)
    before = store.query(f"select * exclude (computed_at) from {FEATURE_DRIFT} order by all")
    second = write(store, store.days)
    after = store.query(f"select * exclude (computed_at) from {FEATURE_DRIFT} order by all")
    assert after == before and second.deleted == first.inserted == second.inserted == len(before)
    assert store.scalar(f"select count(distinct computed_at) from {FEATURE_DRIFT}") == 1

    day2 = {r["statistic"]: r["value"] for r in store.query(
        f"select statistic, value from {FEATURE_DRIFT} where feature = 'shifted' and window_start = ?", [DAY2.start])}
    calmed = write(store, {DAY1: store.days[DAY2]})  # day 1 again, now with unshifted data
    assert calmed.deleted == calmed.inserted == len(before) // 2
    got = results(store)
    assert got[("shifted", DAY1.start, "psi")] == pytest.approx(got[("shifted", DAY2.start, "psi")])
    assert {s: got[("shifted", DAY2.start, s)] for s in day2} == day2  # day 2 untouched


def test_a_failed_run_leaves_the_previous_rows(store):
    write(store, store.days)
    before = store.query(f"select * from {FEATURE_DRIFT} order by all")
    with pytest.raises(Exception, match="no_such_table"):
        dr.write_drift(store, 'monitoring."no_such_table"', KINDS, model_name="m", version=1, source="batch",
                       span=TimeRange(DAY1.start, DAY2.end), computed_at=dt.datetime.now(UTC))
    assert store.query(f"select * from {FEATURE_DRIFT} order by all") == before


def test_the_reference_profile_is_value_counts_with_the_nulls(store):
    gappy = store.query("select sum(n) as rows, sum(n) filter (where value_num is null) as missing, count(*) as "
                        "distinct_values from monitoring.reference_profile where feature = 'gappy'")[0]
    missing = int(np.isnan(store.reference["gappy"]).sum())
    assert gappy == {"rows": REF_ROWS, "missing": missing, "distinct_values": REF_ROWS - missing + 1}
    assert store.query("select value_num, n from monitoring.reference_profile where feature = 'counts' "
                       "order by value_num")[0]["n"] == int((store.reference["counts"] == 0).sum())


def test_a_continuous_feature_is_bucketed_psi_stays_exact_and_ks_within_the_bound():
    """More distinct reference values than MAX_EXACT_VALUES: the stored profile is bounded, PSI, the
    out-of-range share and the missing rate equal the exact ones, KS is within 1 / MAX_EXACT_VALUES of
    SciPy's, and the score's reference distribution (its buckets stop at the display bins) is exact."""
    rng = np.random.default_rng(11)
    rows = 3 * pf.MAX_EXACT_VALUES
    kinds = {"wide": NUMERIC, "counts": NUMERIC, pf.SCORE_FEATURE: NUMERIC}
    reference = {"wide": np.where(rng.random(rows) < 0.03, np.nan, rng.normal(0.0, 1.0, rows)),
                 "counts": rng.integers(0, 6, rows).astype(float),
                 pf.SCORE_FEATURE: rng.beta(2.0, 5.0, rows)}
    reference["wide"][:500] = 0.25  # a heavy value inside the range: it ends a bucket of its own
    days = {DAY1: {"wide": np.concatenate([rng.normal(0.1, 1.2, 9000), rng.uniform(4.5, 6.0, 300), [np.nan] * 700]),
                   "counts": rng.integers(-1, 8, 10_000).astype(float),
                   pf.SCORE_FEATURE: rng.beta(2.4, 5.0, 10_000)},
            DAY2: {"wide": np.concatenate([rng.normal(0.0, 1.0, 5000), np.full(100, 0.25), [-7.0] * 50]),
                   "counts": rng.integers(0, 6, 5150).astype(float),
                   pf.SCORE_FEATURE: rng.beta(2.0, 5.0, 5150)}}

    def table(data, window=None):
        n = len(next(iter(data.values())))
        columns = {} if window is None else {
            "window_start": pa.repeat(pa.scalar(window.start, pa.timestamp("us", tz="UTC")), n),
            "window_end": pa.repeat(pa.scalar(window.end, pa.timestamp("us", tz="UTC")), n)}
        return pa.table(columns | {k: pa.array(v, pa.float64(), from_pandas=True) for k, v in data.items()})

    with DuckDBStore.in_memory() as store:
        rf.write_reference(store, "m", 1, table(reference), kinds, snapshot_id="synthetic", spine_time_before=None)
        profile = {r["feature"]: r for r in store.query(
            "select feature, count(*) as points, sum(n) as rows, sum(n) filter (where value_num is null) as missing, "
            "min(value_num) as lo, max(value_num) as hi from monitoring.reference_profile group by feature")}
        for feature in ("wide", pf.SCORE_FEATURE):  # bounded, and the range and the NULLs kept
            assert profile[feature]["points"] <= pf.MAX_EXACT_VALUES + 25
            assert profile[feature]["rows"] == rows and profile[feature]["lo"] == np.nanmin(reference[feature])
            assert profile[feature]["hi"] == np.nanmax(reference[feature])
        assert profile["wide"]["missing"] == np.isnan(reference["wide"]).sum()
        assert profile["counts"]["points"] == 6  # few distinct values: exact counts as before

        store.create_table("monitoring", "_current", pa.concat_tables([table(d, w) for w, d in days.items()]))
        dr.write_drift(store, 'monitoring."_current"', kinds, model_name="m", version=1, source="batch",
                       span=TimeRange(DAY1.start, DAY2.end), computed_at=dt.datetime.now(UTC))
        got = results(store)
        for window, data in days.items():
            for feature in kinds:
                r, c = reference[feature], data[feature]
                assert got[(feature, window.start, "psi")] == pytest.approx(numpy_psi(r, c), rel=1e-9, abs=1e-12)
                exact_ks = stats.ks_2samp(valid(r), valid(c)).statistic
                bound = 1e-12 if feature == "counts" else 1 / pf.MAX_EXACT_VALUES
                assert abs(got[(feature, window.start, "ks")] - exact_ks) < bound
                assert got[(feature, window.start, "out_of_range_share")] == pytest.approx(
                    np.mean((valid(c) < np.nanmin(r)) | (valid(c) > np.nanmax(r))), rel=1e-12, abs=1e-15)
                assert got[(feature, window.start, "missing_rate_change")] == pytest.approx(
                    np.isnan(c).mean() - np.isnan(r).mean(), rel=1e-12, abs=1e-15)
        assert got[("wide", DAY1.start, "out_of_range_share")] > 0.03 and got[("wide", DAY2.start, "psi")] > 0

        binned = {r["bin"]: r["n"] for r in store.query(
            f"select {bin_of('value_num')} as bin, sum(n) as n from monitoring.reference_profile "
            f"where feature = ? group by bin", [pf.SCORE_FEATURE])}
        exact = np.bincount(np.minimum(np.floor(reference[pf.SCORE_FEATURE] * SCORE_BINS), SCORE_BINS - 1).astype(int),
                            minlength=SCORE_BINS)
        assert [binned.get(k, 0) for k in range(SCORE_BINS)] == exact.tolist()
