"""The statistics behind promote / keep / not yet decided: champion against challenger on per-row log loss.

Everything is a difference **challenger minus champion** of mean log loss: negative means the challenger
predicts better. Two tests, for the two ways a challenger is scored:

* **Paired** (:func:`paired_test`): both models scored the *same* rows (shadow serving, batch scoring of the
  same spine), so each row gives one difference ``d_i = loss_challenger_i - loss_champion_i``; the mean
  difference, its t interval (``mean ± t_{1-α/2, n-1} · sd / √n``), the two-sided p-value, and a percentile
  bootstrap interval (seeded: the same rows give the same interval) that does not lean on normality.
* **Sequential** (:func:`msprt`): the models scored *different* rows (canary: each entity sees one model),
  and the result is looked at every day as outcomes arrive. A fixed-sample test peeked at daily rejects far
  more often than its α; the mixture sequential probability ratio test (mSPRT; Robbins 1970, Johari et al.
  2017, "Always valid inference") does not. With the estimate ``θ̂`` (difference of means) and its variance
  ``V`` (``s_A²/n_A + s_B²/n_B``), a normal mixture ``θ ~ N(0, τ²)`` over the alternative gives the ratio

      Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²)))

  and the always-valid ``1 - α`` interval ``θ̂ ± sqrt(V (V + τ²) / τ² · (log((V + τ²) / V) - 2 log α))``:
  ``P(Λ ever ≥ 1/α | θ = 0) ≤ α`` however often it is looked at, and the interval covers θ at every look
  at once, so intersecting the intervals of all looks so far (:func:`running_intersection`) stays valid.
  ``τ`` (``mixture_sd``) is the size of effect the test is tuned to find fastest: a log-loss difference of
  0.01 by default (on a base log loss around 0.3-0.5, a few percent).

**Verdict** (:func:`verdict`): significant (p < α, or Λ ≥ 1/α) with the interval wholly below zero:
``promote``; wholly above zero: ``keep``; anything else, including too few rows: ``not yet decided``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EPS = 1e-15  # probabilities clipped to [EPS, 1 - EPS], as models_ml.training.evaluate.log_loss does
PROMOTE, KEEP, UNDECIDED = "promote", "keep", "not yet decided"
MIN_ROWS = 30  # fewer rows with an outcome (per arm): no verdict


def row_log_loss(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """The log loss of each row (its mean is the usual log loss)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_score, dtype=np.float64), EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def relative(difference: float, champion_mean: float) -> float | None:
    """The difference as a share of the champion's mean loss (the effect size a reader compares)."""
    return difference / champion_mean if champion_mean else None


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def below_zero(self) -> bool:
        return self.high < 0

    def above_zero(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison: ``difference`` is the mean of ``challenger - champion`` per row."""

    rows: int
    champion_mean: float
    challenger_mean: float
    difference: float
    standard_error: float
    t_interval: Interval
    bootstrap_interval: Interval
    p_value: float
    alpha: float

    @property
    def relative_difference(self) -> float | None:
        return relative(self.difference, self.champion_mean)

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


def paired_test(champion_loss: Sequence[float] | np.ndarray, challenger_loss: Sequence[float] | np.ndarray,
                alpha: float = 0.05, resamples: int = 2000, seed: int = 0) -> PairedResult:
    """The paired t test and bootstrap interval of the per-row differences (see the module docstring)."""
    from scipy import stats

    a = np.asarray(champion_loss, dtype=np.float64)
    b = np.asarray(challenger_loss, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired losses need the same rows: {a.size} champion against {b.size} challenger")
    n = a.size
    d = b - a
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        nan = Interval(math.nan, math.nan)
        return PairedResult(n, float(a.mean()) if n else math.nan, float(b.mean()) if n else math.nan, mean,
                            math.nan, nan, nan, 1.0, alpha)
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se == 0:
        t_interval = Interval(mean, mean)
        p = 1.0 if mean == 0 else 0.0
    else:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
        t_interval = Interval(mean - half, mean + half)
        p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    if resamples <= 0:  # a daily look: the t interval is enough
        nan = Interval(math.nan, math.nan)
        return PairedResult(n, float(a.mean()), float(b.mean()), mean, se, t_interval, nan, p, alpha)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):  # a loop of vector means: memory stays one resample, not resamples x n
        means[i] = d[rng.integers(0, n, n)].mean()
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedResult(n, float(a.mean()), float(b.mean()), mean, se, t_interval,
                        Interval(float(low), float(high)), p, alpha)


@dataclass(frozen=True)
class SequentialResult:
    """An mSPRT look: ``difference`` is challenger mean minus champion mean, on different rows."""

    champion_rows: int
    challenger_rows: int
    champion_mean: float
    challenger_mean: float
    difference: float
    variance: float
    likelihood_ratio: float
    interval: Interval  # always valid at this look
    alpha: float
    mixture_sd: float

    @property
    def relative_difference(self) -> float | None:
        return relative(self.difference, self.champion_mean)

    @property
    def significant(self) -> bool:
        return self.likelihood_ratio >= 1 / self.alpha

    @property
    def rows(self) -> int:
        return min(self.champion_rows, self.challenger_rows)


def mixture_ratio(estimate: float, variance: float, mixture_sd: float) -> float:
    """Λ of the normal-mixture SPRT for an estimate with ``variance`` (see the module docstring)."""
    tau2 = mixture_sd ** 2
    if variance <= 0:
        return math.inf if estimate != 0 else 1.0
    exponent = estimate ** 2 * tau2 / (2 * variance * (variance + tau2))
    return math.sqrt(variance / (variance + tau2)) * math.exp(min(exponent, 700.0))


def always_valid_interval(estimate: float, variance: float, mixture_sd: float, alpha: float) -> Interval:
    """The ``1 - alpha`` always-valid interval of the mixture SPRT around ``estimate``."""
    tau2 = mixture_sd ** 2
    if variance <= 0:
        return Interval(estimate, estimate)
    half = math.sqrt(variance * (variance + tau2) / tau2 * (math.log((variance + tau2) / variance)
                                                            - 2 * math.log(alpha)))
    return Interval(estimate - half, estimate + half)


def msprt(champion_loss: Sequence[float] | np.ndarray, challenger_loss: Sequence[float] | np.ndarray,
          alpha: float = 0.05, mixture_sd: float = 0.01) -> SequentialResult:
    """One look of the two-sample mSPRT on the rows with an outcome so far (see the module docstring)."""
    a = np.asarray(champion_loss, dtype=np.float64)
    b = np.asarray(challenger_loss, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return SequentialResult(a.size, b.size, float(a.mean()) if a.size else math.nan,
                                float(b.mean()) if b.size else math.nan, math.nan, math.nan, 1.0,
                                Interval(-math.inf, math.inf), alpha, mixture_sd)
    estimate = float(b.mean() - a.mean())
    variance = float(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return SequentialResult(a.size, b.size, float(a.mean()), float(b.mean()), estimate, variance,
                            mixture_ratio(estimate, variance, mixture_sd),
                            always_valid_interval(estimate, variance, mixture_sd, alpha), alpha, mixture_sd)


def running_intersection(intervals: Sequence[Interval]) -> list[Interval]:
    """Each look's interval intersected with every earlier one's: valid at all looks at once (always-valid
    intervals), and never widening. An empty intersection stays at its last non-empty value."""
    out: list[Interval] = []
    low, high = -math.inf, math.inf
    for interval in intervals:
        new_low, new_high = max(low, interval.low), min(high, interval.high)
        if new_low <= new_high:
            low, high = new_low, new_high
        out.append(Interval(low, high))
    return out


def verdict(significant: bool, interval: Interval, rows: int, min_rows: int = MIN_ROWS) -> str:
    """promote / keep / not yet decided (see the module docstring)."""
    if rows < min_rows or not significant:
        return UNDECIDED
    if interval.below_zero():
        return PROMOTE
    if interval.above_zero():
        return KEEP
    return UNDECIDED
