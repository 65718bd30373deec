"""Evaluation and the promotion gate: metrics overall and per slice, calibration, champion comparison, plots.

The metrics are small, well-known formulas written with numpy (no scikit-learn dependency); each matches
scikit-learn's definition, which the tests check on hand-computable cases:

* ROC-AUC: the Mann-Whitney statistic with average ranks for tied scores (``roc_auc_score``);
* PR-AUC: average precision, the step-wise sum ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds
  (``average_precision_score``; no trapezoids, which are optimistic);
* log loss with probabilities clipped to ``[1e-15, 1 - 1e-15]``; Brier score, the mean squared error;
* calibration: equal-width bins on the score, per bin the mean score against the observed positive rate;
  the expected calibration error (ECE) is the row-weighted mean absolute gap;
* the threshold view: precision, recall and share flagged when flagging every score at or above a
  threshold, and precision, recall and lift at the top k % of rows by score.

A slice is one value of one slice column (e.g. one carrier). Slices with fewer than ``min_slice_rows``
rows or a single class are skipped (their AUC is undefined or noise) and listed as skipped. The worst
slice is the one with the lowest ROC-AUC.

The gate passes when every configured threshold holds and the candidate is not worse than the current
champion on the same test rows by more than ``champion_tolerance`` on ``champion_metric``.

The registered plots (:func:`save_plots`) are drawn by :mod:`models_ml.training.plots`; the full report of a
version is :mod:`models_ml.training.report`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.training.train import Model, target_array

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False, "ece": False}
_EPS = 1e-15


# --------------------------------------------------------------------------------------------------
# Metrics


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.float64).ravel()
    p = np.asarray(y_score).astype(np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y, p


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    y, p = _check(y_true, y_score)
    positives = y.sum()
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct threshold, from the highest score down."""
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(p_sorted)), y.size - 1]
    true_positives = np.cumsum(y_sorted)[last_of_each]
    false_positives = last_of_each + 1 - true_positives
    return true_positives, false_positives, p_sorted[last_of_each]


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), starting at (0, 0)."""
    y, p = _check(y_true, y_score)
    tp, fp, _ = _curve(y, p)
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def precision_recall_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, from the highest score down."""
    y, p = _check(y_true, y_score)
    tp, fp, _ = _curve(y, p)
    return tp / max(tp[-1], 1), tp / (tp + fp)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float | None:
    """PR-AUC as average precision; None without positives."""
    y, p = _check(y_true, y_score)
    if y.sum() == 0:
        return None
    recall, precision = precision_recall_curve(y, p)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y_true: np.ndarray, y_score: np.ndarray) -> float:
    y, p = _check(y_true, y_score)
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    y, p = _check(y_true, y_score)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    rows: int
    mean_score: float | None
    positive_rate: float | None


def reliability(y_true: np.ndarray, y_score: np.ndarray, bins: int = 10) -> list[CalibrationBin]:
    """Equal-width score bins ``[i/bins, (i+1)/bins)`` (the last one closed) with their mean score and
    observed positive rate; empty bins have None."""
    y, p = _check(y_true, y_score)
    index = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    score_sum = np.bincount(index, weights=p, minlength=bins)
    positive_sum = np.bincount(index, weights=y, minlength=bins)
    return [
        CalibrationBin(
            lower=i / bins, upper=(i + 1) / bins, rows=int(rows[i]),
            mean_score=float(score_sum[i] / rows[i]) if rows[i] else None,
            positive_rate=float(positive_sum[i] / rows[i]) if rows[i] else None,
        )
        for i in range(bins)
    ]


def expected_calibration_error(y_true: np.ndarray, y_score: np.ndarray, bins: int = 10) -> float:
    table = reliability(y_true, y_score, bins)
    total = sum(b.rows for b in table)
    if total == 0:
        return 0.0
    return float(sum(b.rows * abs(b.mean_score - b.positive_rate) for b in table if b.rows) / total)


@dataclass(frozen=True)
class ThresholdCurve:
    """What flagging every row scoring at least ``threshold`` gives: precision (NaN where nothing is
    flagged), recall and the share of rows flagged, at evenly spaced thresholds from 0 to 1."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    flagged: np.ndarray


def threshold_curve(y_true: np.ndarray, y_score: np.ndarray, points: int = 101) -> ThresholdCurve:
    y, p = _check(y_true, y_score)
    thresholds = np.linspace(0.0, 1.0, points)
    order = np.argsort(p, kind="mergesort")
    first_flagged = np.searchsorted(p[order], thresholds, side="left")  # rows before it score below
    positives_below = np.r_[0.0, np.cumsum(y[order])][first_flagged]
    flagged = y.size - first_flagged
    true_positives = y.sum() - positives_below
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, true_positives / np.maximum(flagged, 1), np.nan)
    return ThresholdCurve(thresholds, precision, true_positives / max(y.sum(), 1), flagged / max(y.size, 1))


@dataclass(frozen=True)
class TopFraction:
    """The ``rows`` highest-scoring rows (a ``fraction`` of all): their precision, the recall they reach,
    the lift (precision over the base rate) and the lowest score among them (the threshold that flags them)."""

    fraction: float
    rows: int
    positives: int
    precision: float
    recall: float
    lift: float | None
    threshold: float


def top_fractions(y_true: np.ndarray, y_score: np.ndarray,
                  fractions: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)) -> list[TopFraction]:
    """Precision, recall and lift at the top k % of rows by score (ties kept in row order)."""
    y, p = _check(y_true, y_score)
    if y.size == 0:
        return []
    order = np.argsort(-p, kind="mergesort")
    cumulative = np.cumsum(y[order])
    base_rate, total = float(y.mean()), float(max(y.sum(), 1))
    result = []
    for fraction in fractions:
        rows = int(min(y.size, max(1, np.ceil(fraction * y.size))))
        positives = int(cumulative[rows - 1])
        precision = positives / rows
        result.append(TopFraction(float(fraction), rows, positives, precision, positives / total,
                                  precision / base_rate if base_rate else None, float(p[order][rows - 1])))
    return result


@dataclass(frozen=True)
class Metrics:
    """The metrics of one set of predictions; the AUCs are None when a class is missing."""

    rows: int
    positives: int
    positive_rate: float
    mean_score: float
    roc_auc: float | None
    pr_auc: float | None
    log_loss: float
    brier: float
    ece: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def get(self, name: str) -> float | None:
        return getattr(self, name)


def compute_metrics(y_true: np.ndarray, y_score: np.ndarray, bins: int = 10) -> Metrics:
    y, p = _check(y_true, y_score)
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    return Metrics(
        rows=int(y.size),
        positives=int(y.sum()),
        positive_rate=float(y.mean()),
        mean_score=float(p.mean()),
        roc_auc=roc_auc(y, p),
        pr_auc=average_precision(y, p),
        log_loss=log_loss(y, p),
        brier=brier_score(y, p),
        ece=expected_calibration_error(y, p, bins),
    )


# --------------------------------------------------------------------------------------------------
# Slices


@dataclass(frozen=True)
class SliceMetrics:
    column: str
    value: str
    metrics: Metrics

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "value": self.value, **self.metrics.as_dict()}


@dataclass(frozen=True)
class SkippedSlice:
    column: str
    value: str
    rows: int
    reason: str


NULL_SLICE = "(null)"


def _slice_values(column: Any) -> np.ndarray:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        column = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
    values = np.asarray(column, dtype=object)
    return np.array([NULL_SLICE if v is None else str(v) for v in values], dtype=object)


def slice_metrics(
    y_true: np.ndarray,
    y_score: np.ndarray,
    slices: Mapping[str, Any],
    min_rows: int = 200,
    bins: int = 10,
) -> tuple[list[SliceMetrics], list[SkippedSlice]]:
    """Metrics for every value of every slice column, and the slices skipped (too small or one class)."""
    y, p = _check(y_true, y_score)
    evaluated, skipped = [], []
    for column, raw in slices.items():
        values = _slice_values(raw)
        if values.size != y.size:
            raise ValueError(f"slice column {column!r} has {values.size} values for {y.size} rows")
        for value in sorted(set(values.tolist())):
            mask = values == value
            rows, positives = int(mask.sum()), int(y[mask].sum())
            if rows < min_rows:
                skipped.append(SkippedSlice(column, value, rows, f"fewer than {min_rows} rows"))
            elif positives in (0, rows):
                skipped.append(SkippedSlice(column, value, rows, "a single class"))
            else:
                evaluated.append(SliceMetrics(column, value, compute_metrics(y[mask], p[mask], bins)))
    return evaluated, skipped


def worst_slice(slices: Sequence[SliceMetrics], metric: str = "roc_auc") -> SliceMetrics | None:
    """The slice that does worst on ``metric`` (lowest for AUCs, highest for losses)."""
    scored = [s for s in slices if s.metrics.get(metric) is not None]
    if not scored:
        return None
    key = lambda s: s.metrics.get(metric)  # noqa: E731
    return min(scored, key=key) if HIGHER_IS_BETTER[metric] else max(scored, key=key)


# --------------------------------------------------------------------------------------------------
# Evaluating a model


@dataclass(frozen=True)
class EvaluationConfig:
    calibration_bins: int = 10
    min_slice_rows: int = 200
    worst_slice_metric: str = "roc_auc"


@dataclass
class ChampionComparison:
    """The current champion scored on the candidate's test rows; metrics None when it cannot be scored."""

    version: int
    metrics: Metrics | None
    note: str = ""
    y_score: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "metrics": self.metrics.as_dict() if self.metrics else None, "note": self.note}


@dataclass
class Evaluation:
    """A model's evaluation on one dataset (the test split), ready for the gate, registry and plots."""

    dataset: str
    metrics: Metrics
    calibration: list[CalibrationBin]
    slices: list[SliceMetrics]
    skipped_slices: list[SkippedSlice]
    worst_slice: SliceMetrics | None
    champion: ChampionComparison | None
    feature_importance: dict[str, float] = field(default_factory=dict)
    y_true: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    y_score: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "metrics": self.metrics.as_dict(),
            "calibration": [dataclasses.asdict(b) for b in self.calibration],
            "slices": [s.as_dict() for s in self.slices],
            "skipped_slices": [dataclasses.asdict(s) for s in self.skipped_slices],
            "worst_slice": self.worst_slice.as_dict() if self.worst_slice else None,
            "champion": self.champion.as_dict() if self.champion else None,
            "feature_importance": self.feature_importance,
        }


def evaluate_model(
    model: Model,
    test: pa.Table,
    slice_columns: Sequence[str] = (),
    config: EvaluationConfig | None = None,
    champion: Model | None = None,
    champion_version: int | None = None,
    dataset: str = "test",
) -> Evaluation:
    """Score ``model`` (and the champion, if given) on ``test`` and compute every metric and slice."""
    config = config or EvaluationConfig()
    y = target_array(test, model.spec.target)
    scores = model.predict(test)
    missing = [c for c in slice_columns if c not in test.column_names]
    if missing:
        raise ValueError(f"test table lacks slice columns {missing}")
    slices, skipped = slice_metrics(
        y, scores, {c: test[c] for c in slice_columns}, config.min_slice_rows, config.calibration_bins
    )
    comparison = None
    if champion is not None:
        try:
            champion_scores = champion.predict(test)
            comparison = ChampionComparison(
                version=int(champion_version or 0),
                metrics=compute_metrics(y, champion_scores, config.calibration_bins),
                y_score=champion_scores,
            )
        except ValueError as error:  # e.g. the champion uses features this snapshot does not have
            comparison = ChampionComparison(int(champion_version or 0), None, f"champion not comparable: {error}")
    return Evaluation(
        dataset=dataset,
        metrics=compute_metrics(y, scores, config.calibration_bins),
        calibration=reliability(y, scores, config.calibration_bins),
        slices=slices,
        skipped_slices=skipped,
        worst_slice=worst_slice(slices, config.worst_slice_metric),
        champion=comparison,
        feature_importance=model.feature_importance(),
        y_true=y,
        y_score=scores,
    )


# --------------------------------------------------------------------------------------------------
# The gate


@dataclass(frozen=True)
class GateConfig:
    """Promotion thresholds; None disables a check."""

    min_roc_auc: float | None = 0.65
    min_pr_auc: float | None = None
    max_log_loss: float | None = None
    max_brier: float | None = None
    max_ece: float | None = 0.05
    min_worst_slice_roc_auc: float | None = 0.55
    champion_metric: str = "roc_auc"
    champion_tolerance: float = 0.005

    def __post_init__(self) -> None:
        if self.champion_metric not in HIGHER_IS_BETTER:
            raise ValueError(f"champion_metric must be one of {sorted(HIGHER_IS_BETTER)}")


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str = ""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[GateCheck, ...]

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [dataclasses.asdict(c) for c in self.checks]}

    def summary(self) -> str:
        if self.passed:
            return "passed"
        return "failed: " + "; ".join(f"{c.name} {c.detail}".strip() for c in self.failures)


def _threshold(name: str, value: float | None, threshold: float | None, at_least: bool) -> GateCheck | None:
    if threshold is None:
        return None
    if value is None:
        return GateCheck(name, False, None, threshold, "undefined (one class only)")
    passed = value >= threshold if at_least else value <= threshold
    sign = ">=" if at_least else "<="
    return GateCheck(name, passed, value, threshold, f"{value:.4f} {'' if passed else 'not '}{sign} {threshold}")


def check_gate(evaluation: Evaluation, gate: GateConfig | None = None) -> GateResult:
    """Whether a candidate may become champion: thresholds on its test metrics and worst slice, and not
    worse than the champion (when one exists and can be scored on the same rows)."""
    gate = gate or GateConfig()
    m = evaluation.metrics
    worst = evaluation.worst_slice.metrics.roc_auc if evaluation.worst_slice else None
    checks = [
        _threshold("roc_auc", m.roc_auc, gate.min_roc_auc, True),
        _threshold("pr_auc", m.pr_auc, gate.min_pr_auc, True),
        _threshold("log_loss", m.log_loss, gate.max_log_loss, False),
        _threshold("brier", m.brier, gate.max_brier, False),
        _threshold("ece", m.ece, gate.max_ece, False),
    ]
    if gate.min_worst_slice_roc_auc is not None and evaluation.worst_slice is None:
        checks.append(GateCheck("worst_slice_roc_auc", True, None, gate.min_worst_slice_roc_auc,
                                "no slice large enough to evaluate"))
    else:
        check = _threshold("worst_slice_roc_auc", worst, gate.min_worst_slice_roc_auc, True)
        if check is not None and evaluation.worst_slice is not None:
            s = evaluation.worst_slice
            check = dataclasses.replace(check, detail=f"{check.detail} ({s.column}={s.value})")
        checks.append(check)
    champion = evaluation.champion
    if champion is not None:
        metric = gate.champion_metric
        if champion.metrics is None:
            checks.append(GateCheck("vs_champion", True, None, None, champion.note or "champion not comparable"))
        else:
            mine, theirs = m.get(metric), champion.metrics.get(metric)
            if mine is None or theirs is None:
                checks.append(GateCheck("vs_champion", False, mine, theirs, f"{metric} undefined"))
            else:
                higher = HIGHER_IS_BETTER[metric]
                margin = (mine - theirs) if higher else (theirs - mine)
                passed = margin >= -gate.champion_tolerance
                checks.append(GateCheck(
                    "vs_champion", passed, mine, theirs,
                    f"{metric} {mine:.4f} vs champion v{champion.version} {theirs:.4f} "
                    f"(tolerance {gate.champion_tolerance})",
                ))
    kept = tuple(c for c in checks if c is not None)
    return GateResult(all(c.passed for c in kept), kept)


# --------------------------------------------------------------------------------------------------
# Plots and the summary


def save_plots(evaluation: Evaluation, directory: Path, model_name: str, version: int | str,
               top_features: int = 20, baselines: Mapping[str, np.ndarray] | None = None) -> dict[str, Path]:
    """ROC, precision-recall, calibration and feature-importance PNGs named after the model version.

    The champion (when it was scored on the same rows) and each of ``baselines`` (name -> scores of the same
    rows, e.g. a base-rate or one-feature model) are drawn beside the model on the ROC and PR charts.
    """
    from models_ml.training import plots

    label = f"{model_name} v{version}"
    y, p, m = evaluation.y_true, evaluation.y_score, evaluation.metrics
    others: list[tuple[str, np.ndarray]] = []
    champion = evaluation.champion
    if champion is not None and champion.y_score is not None:
        others.append((f"champion v{champion.version}", champion.y_score))
    others += list((baselines or {}).items())

    def path(kind: str) -> Path:
        return directory / f"{model_name}_v{version}_{kind}.png"

    def named(name: str, value: float | None, what: str) -> str:
        return name if value is None else f"{name} ({what} {value:.3f})"

    roc = [plots.Series(*roc_curve(y, p), named(label, m.roc_auc, "AUC"))]
    roc += [plots.Series(*roc_curve(y, s), named(n, roc_auc(y, s), "AUC"), dashed=True) for n, s in others]
    paths = {"roc": plots.lines(path("roc"), f"ROC, {evaluation.dataset}: {label}", "false positive rate",
                                "true positive rate", roc, diagonal=True, legend="lower right")}

    pr = [plots.Series(*precision_recall_curve(y, p), named(label, m.pr_auc, "AP"), step=True)]
    pr += [plots.Series(*precision_recall_curve(y, s), named(n, average_precision(y, s), "AP"), step=True,
                        dashed=True) for n, s in others]
    paths["pr"] = plots.lines(path("pr"), f"Precision-recall, {evaluation.dataset}: {label}", "recall",
                              "precision", pr, hline=(m.positive_rate, f"base rate {m.positive_rate:.3f}"),
                              legend="upper right")

    paths["calibration"] = plots.calibration(
        path("calibration"), f"Calibration, {evaluation.dataset}: {label}",
        [(b.lower, b.upper, b.rows, b.mean_score, b.positive_rate) for b in evaluation.calibration],
        f"{label} (ECE {m.ece:.3f})")

    ranked = sorted(evaluation.feature_importance.items(), key=lambda kv: kv[1], reverse=True)[:top_features]
    paths["importance"] = plots.horizontal_bars(
        path("importance"), f"Feature importance (gain): {label}", "total gain",
        [name for name, _ in ranked], [value for _, value in ranked])
    return paths


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_markdown(model_name: str, version: int, evaluation: Evaluation, gate: GateResult,
                     alias: str | None, extra: Mapping[str, Any] | None = None) -> str:
    """A short markdown report: metrics vs champion, worst slices, gate checks, and what was decided."""
    m = evaluation.metrics
    champion = evaluation.champion.metrics if evaluation.champion and evaluation.champion.metrics else None
    title = f"# {model_name} v{version}: gate {'passed' if gate.passed else 'failed'}"
    lines = [title + (f", now `{alias}`" if alias else ""), ""]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", f"## Test metrics ({m.rows:,} rows, positive rate {m.positive_rate:.3f})", ""]
    header = "| metric | candidate |" + (f" champion v{evaluation.champion.version} |" if champion else "")
    lines += [header, "|---|---|" + ("---|" if champion else "")]
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "ece"):
        row = f"| {metric} | {_fmt(m.get(metric))} |"
        if champion:
            row += f" {_fmt(champion.get(metric))} |"
        lines.append(row)
    if evaluation.slices:
        lines += ["", "## Worst slices (ROC-AUC)", "", "| slice | rows | positive rate | roc_auc | ece |",
                  "|---|---|---|---|---|"]
        ranked = sorted(evaluation.slices, key=lambda s: s.metrics.roc_auc if s.metrics.roc_auc is not None else 1)
        for s in ranked[:5]:
            lines.append(f"| {s.column}={s.value} | {s.metrics.rows:,} | {s.metrics.positive_rate:.3f} | "
                         f"{_fmt(s.metrics.roc_auc)} | {_fmt(s.metrics.ece)} |")
        if evaluation.skipped_slices:
            lines.append(f"\n{len(evaluation.skipped_slices)} slices skipped (too small or one class).")
    lines += ["", "## Gate", "", "| check | passed | detail |", "|---|---|---|"]
    for check in gate.checks:
        lines.append(f"| {check.name} | {'yes' if check.passed else '**no**'} | {check.detail} |")
    return "\n".join(lines) + "\n"
