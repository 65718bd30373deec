"""The statistics behind a verdict: the paired test against scipy's, and the sequential test's promise that
looking every day does not raise its error rate (where a fixed-sample test peeked at daily does)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models_ml.decisions import statistics as st


def test_paired_test_agrees_with_scipy_and_its_bootstrap_is_seeded():
    rng = np.random.default_rng(7)
    champion = rng.gamma(2.0, 0.2, 500)
    challenger = champion - 0.02 + rng.normal(0, 0.05, 500)
    result = st.paired_test(champion, challenger)
    reference = stats.ttest_rel(challenger, champion)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.difference == pytest.approx(float(np.mean(challenger - champion)), rel=1e-12)
    assert result.t_interval.low < result.difference < result.t_interval.high
    assert st.paired_test(champion, challenger).bootstrap_interval == result.bootstrap_interval
    assert result.bootstrap_interval.below_zero() and result.significant
    assert st.verdict(result.significant, result.t_interval, result.rows) == st.PROMOTE
    assert st.verdict(result.significant, st.Interval(-result.t_interval.high, -result.t_interval.low),
                      result.rows) == st.KEEP


def test_paired_test_refuses_unpaired_rows_and_is_undecided_on_few():
    with pytest.raises(ValueError, match="same rows"):
        st.paired_test([0.1, 0.2], [0.1])
    few = st.paired_test([0.3] * 5, [0.1] * 5)
    assert st.verdict(few.significant, few.t_interval, few.rows) == st.UNDECIDED


def test_row_log_loss_is_the_usual_log_loss_per_row():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.0, 1.0])  # the last two clipped, as the evaluation clips
    loss = st.row_log_loss(y, p)
    assert loss[0] == pytest.approx(-math.log(0.9)) and loss[1] == pytest.approx(-math.log(0.8))
    assert np.isfinite(loss).all()


def _daily_looks(rng, days: int, per_day: int, effect: float):
    """Two arms of per-row losses arriving day by day; the mSPRT and a naive t test looked at each day."""
    a = rng.normal(0.4, 0.3, days * per_day)
    b = rng.normal(0.4 + effect, 0.3, days * per_day)
    msprt_hit = naive_hit = False
    for day in range(1, days + 1):
        n = day * per_day
        look = st.msprt(a[:n], b[:n], mixture_sd=0.05)
        msprt_hit = msprt_hit or look.significant
        naive_hit = naive_hit or stats.ttest_ind(a[:n], b[:n], equal_var=False).pvalue < 0.05
    return msprt_hit, naive_hit


def test_msprt_keeps_its_error_rate_under_daily_looks_where_a_peeked_t_test_does_not():
    rng = np.random.default_rng(2026)
    runs = [_daily_looks(rng, days=30, per_day=40, effect=0.0) for _ in range(400)]
    msprt_rate = sum(m for m, _ in runs) / len(runs)
    naive_rate = sum(n for _, n in runs) / len(runs)
    assert msprt_rate <= 0.05  # always valid: at most alpha however often it is looked at
    assert naive_rate > 0.10  # the fixed-sample test peeked at daily rejects far more often than its alpha


def test_msprt_finds_a_real_difference_and_its_intervals_never_widen():
    rng = np.random.default_rng(11)
    a = rng.normal(0.40, 0.3, 6000)
    b = rng.normal(0.34, 0.3, 6000)
    looks = [st.msprt(a[:n], b[:n], mixture_sd=0.05) for n in range(200, 6001, 200)]
    assert looks[-1].significant and looks[-1].interval.below_zero()
    running = st.running_intersection([look.interval for look in looks])
    widths = [i.high - i.low for i in running]
    assert all(later <= earlier for earlier, later in zip(widths, widths[1:]))
    assert running[-1].low <= -0.06 + 0.02 and running[-1].high < 0
