"""The monitoring page a person reads: drift per feature over time, the score against the reference,
performance over time beside the test split, freshness and the alerts, for one model version.

Everything drawn is read back from the ``monitoring`` tables (not from the run's memory), so the page shows
what any SQL client sees, and a re-run over the same days draws the same page. Written to
``FTI_HOME/reports/monitoring/<model>/v<version>/`` (``report.md`` and its PNGs); re-running replaces them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.monitoring.performance import OVERALL
from models_ml.monitoring.pipeline import MonitoringRun
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.scores import ScoreDistribution, score_distribution
from models_ml.monitoring.tables import FEATURE_DRIFT, PERFORMANCE
from models_ml.offline.store import OfflineStore, opened
from models_ml.training import plots, registry

_UTC = dt.timezone.utc
#: the performance metrics drawn over time (each beside its test-split value)
PERFORMANCE_METRICS = ("roc_auc", "log_loss")
SCORE_LABEL = "(score)"


@dataclass(frozen=True)
class DriftMatrix:
    """PSI per feature (rows, the worst first) and window (columns, in time order); NaN where not computed."""

    features: list[str]
    windows: list[dt.datetime]
    psi: np.ndarray


@dataclass(frozen=True)
class PerformanceSeries:
    """Per window: labelled rows, the share of scored rows with an outcome yet, and each metric."""

    windows: list[dt.datetime]
    labelled: list[int]
    label_share: list[float | None]
    metrics: dict[str, list[float | None]]
    test: dict[str, float | None]


def drift_matrix(store: OfflineStore, model_name: str, version: int, source: str, span: TimeRange) -> DriftMatrix:
    """The PSI of every feature and the score in each window inside ``span``."""
    rows = store.query(f"select feature, window_start, value from {FEATURE_DRIFT} where model_name = ? and "
                       f"version = ? and source = ? and statistic = 'psi' and window_start >= ? and window_end <= ?",
                       [model_name, version, source, span.start, span.end])
    windows = sorted({r["window_start"].astimezone(_UTC) for r in rows})
    worst: dict[str, float] = {}
    for r in rows:
        worst[r["feature"]] = max(worst.get(r["feature"], -math.inf), r["value"])
    features = sorted(worst, key=lambda f: (-worst[f], f))
    psi = np.full((len(features), len(windows)), np.nan)
    row_of, column_of = {f: i for i, f in enumerate(features)}, {w: j for j, w in enumerate(windows)}
    for r in rows:
        psi[row_of[r["feature"]], column_of[r["window_start"].astimezone(_UTC)]] = r["value"]
    return DriftMatrix(features, windows, psi)


def performance_series(store: OfflineStore, model_name: str, version: int, span: TimeRange,
                       test: dict[str, float | None]) -> PerformanceSeries:
    """The overall (unsliced) metrics of each window inside ``span``."""
    rows = store.query(f"select window_start, metric, value from {PERFORMANCE} where model_name = ? and "
                       f"version = ? and slice_column = ? and window_start >= ? and window_end <= ?",
                       [model_name, version, OVERALL, span.start, span.end]) if store.exists(
                           "monitoring", "performance") else []
    by_window: dict[dt.datetime, dict[str, float]] = {}
    for r in rows:
        by_window.setdefault(r["window_start"].astimezone(_UTC), {})[r["metric"]] = r["value"]
    windows = sorted(by_window)
    return PerformanceSeries(
        windows, [int(by_window[w].get("labelled") or 0) for w in windows],
        [by_window[w].get("label_share") for w in windows],
        {m: [by_window[w].get(m) for w in windows] for m in PERFORMANCE_METRICS},
        {m: test.get(m) for m in PERFORMANCE_METRICS})


def _label(window: dt.datetime, hourly: bool) -> str:
    return f"{window:%m-%d %H:00}" if hourly else f"{window:%Y-%m-%d}"


def plot_drift(path: Path, title: str, matrix: DriftMatrix, hourly: bool, alert: float) -> Path:
    """A heatmap of PSI, features down, windows across; the colour saturates at twice the alert level and
    each cell at or above the alert level is written in."""
    from matplotlib.colors import LinearSegmentedColormap

    figure, axes = plots.new_figure(max(6.0, 0.45 * len(matrix.windows) + 3.5),
                                    max(3.0, 0.28 * len(matrix.features) + 1.6))
    colours = LinearSegmentedColormap.from_list("psi", ["#f7fbff", "#fdd49e", "#d7301f"])
    colours.set_bad("#dddddd")
    image = axes.imshow(np.ma.masked_invalid(matrix.psi), aspect="auto", cmap=colours, vmin=0.0, vmax=2 * alert,
                        interpolation="nearest")
    for (i, j), value in np.ndenumerate(matrix.psi):
        if np.isfinite(value) and value >= alert:
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    axes.set_yticks(np.arange(len(matrix.features)),
                    [SCORE_LABEL if f == SCORE_FEATURE else f for f in matrix.features], fontsize=7)
    axes.set_xticks(np.arange(len(matrix.windows)), [_label(w, hourly) for w in matrix.windows], rotation=45,
                    ha="right", fontsize=7)
    figure.colorbar(image, ax=axes, label=f"PSI (alert at {alert:g})")
    axes.set(title=title, xlabel="window (UTC hour)" if hourly else "window (day)")
    return plots.save(figure, path)


def plot_scores(path: Path, title: str, scores: ScoreDistribution) -> Path:
    """The score's shares per bin, reference against the monitored windows."""
    figure, axes = plots.new_figure(6.5, 4.0)
    edges = np.array(scores.edges)
    for shares, label in ((scores.reference, f"reference (train split, {scores.reference_rows:,} rows)"),
                          (scores.current, f"monitored windows ({scores.current_rows:,} rows)")):
        axes.stairs(shares, edges, fill=True, alpha=0.35, label=label)
    axes.set(xlabel="predicted probability", ylabel="share of rows", title=title, xlim=(0, 1))
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    return plots.save(figure, path)


def plot_performance(path: Path, title: str, series: PerformanceSeries) -> Path:
    """Each metric per window (a hollow marker where outcomes are still arriving), its test-split value as a
    dashed line, one panel per metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 0.45 * len(series.windows) + 3.0), 3.2 * len(PERFORMANCE_METRICS)), dpi=100)
    FigureCanvasAgg(figure)
    x = np.arange(len(series.windows))
    final = np.array([share is not None and share >= 0.999 for share in series.label_share])
    for k, metric in enumerate(PERFORMANCE_METRICS):
        axes = figure.add_subplot(len(PERFORMANCE_METRICS), 1, k + 1)
        y = np.array([np.nan if v is None else v for v in series.metrics[metric]], dtype=float)
        axes.plot(x, y, color="C0", linewidth=1, label=f"{metric} per day")
        axes.scatter(x[final], y[final], color="C0", zorder=3, label="outcomes all in")
        axes.scatter(x[~final], y[~final], facecolors="none", edgecolors="C0", zorder=3, label="outcomes arriving")
        if series.test.get(metric) is not None:
            axes.axhline(series.test[metric], color="C1", linestyle="--", linewidth=1,
                         label=f"test split {series.test[metric]:.4f}")
        axes.set_xticks(x, [_label(w, False) for w in series.windows], rotation=45, ha="right", fontsize=7)
        axes.set(ylabel=metric, title=title if k == 0 else None)
        axes.legend(fontsize=7, loc="best")
    return plots.save(figure, path)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _age(value: dt.timedelta | None) -> str:
    return "-" if value is None else f"{value.total_seconds() / 3600:,.1f} h"


def report_dir(settings: Settings, model_name: str, version: int) -> Path:
    return settings.reports_dir / "monitoring" / model_name / f"v{version}"


def markdown(run: MonitoringRun, matrix: DriftMatrix, scores: ScoreDistribution, series: PerformanceSeries,
             charts: dict[str, str]) -> str:
    """The page: the verdict first, then each section with its chart and table."""
    hourly = run.drift.source == "online"
    retraining = ("called for: " + run.retrain_reason) if run.retrain_called_for else "not called for"
    lines = [
        f"# Monitoring {run.model_name} v{run.version} ({run.view})", "",
        f"{run.drift.source.capitalize()} predictions from {run.drift.origin}, {len(run.drift.windows)} "
        f"{'UTC hours' if hourly else 'days'} from {run.span.start:%Y-%m-%d %H:%M} to {run.span.end:%Y-%m-%d %H:%M} "
        f"UTC, against the reference ({run.drift.reference.part} of {run.drift.reference.snapshot_id}, "
        f"{run.drift.reference.rows:,} rows).", "",
        f"**{len(run.alerts)} alert(s); retraining {retraining}.**", "",
        "## Alerts", "",
        "| severity | kind | subject | value | threshold | retrains | message |", "|---|---|---|---|---|---|---|",
        *(f"| {a.severity} | {a.kind} | {a.subject} | {_num(a.value)} | {_num(a.threshold)} | "
          f"{'yes' if a.retrain else 'no'} | {a.message} |" for a in run.alerts),
        "", "## Drift per feature over time", "",
        f"PSI per {'hour' if hourly else 'day'} (the score as {SCORE_LABEL}), worst feature first; grey: not "
        f"computed. Retraining alert at PSI ≥ {run.thresholds.psi:g} on the top {run.thresholds.top_k} inputs by "
        f"importance.", "", f"![drift per feature]({charts['drift']})", "",
        "| feature | max PSI | on | max KS | max abs. missing-rate change | out of range | unseen |",
        "|---|---|---|---|---|---|---|",
        *(f"| {SCORE_LABEL if f.feature == SCORE_FEATURE else f.feature} | {_num(f.psi)} | "
          f"{_label(f.psi_window, hourly) if f.psi_window else '-'} | {_num(f.ks)} | {_num(f.missing_change)} | "
          f"{_num(f.out_of_range)} | {_num(f.unseen)} |" for f in run.drift.features),
        "", "## Score distribution", "", f"![score distribution]({charts['scores']})", "",
    ]
    if series.windows:
        lines += ["## Performance over time", "",
                  "Per day on the outcomes known so far (hollow: outcomes still arriving), the test split dashed.",
                  "", f"![performance]({charts['performance']})", "",
                  "| day | labelled | outcome share | " + " | ".join(PERFORMANCE_METRICS) + " |",
                  "|---|---|---|" + "---|" * len(PERFORMANCE_METRICS),
                  *(f"| {_label(w, False)} | {n:,} | {_num(share, 2)} | "
                    + " | ".join(_num(series.metrics[m][i], 4) for m in PERFORMANCE_METRICS) + " |"
                    for i, (w, n, share) in enumerate(zip(series.windows, series.labelled, series.label_share))),
                  "| test split | | | " + " | ".join(_num(series.test[m], 4) for m in PERFORMANCE_METRICS) + " |", ""]
    else:
        lines += ["## Performance over time", "", "No outcomes joined yet (online-only or no batch predictions).", ""]
    lines += ["## Freshness of the feature groups", "",
              "| group | version | latest event | event age | last build | build age | warn after | error after "
              "| level |", "|---|---|---|---|---|---|---|---|---|",
              *(f"| {g.group} | v{g.version} | {g.latest_event_at:%Y-%m-%d %H:%M} | {_age(g.event_age)} | "
                f"{g.latest_loaded_at:%Y-%m-%d %H:%M} | {_age(g.build_age)} | {_age(g.expectation.warn_after)} | "
                f"{_age(g.expectation.error_after)} | {g.level} |"
                if g.latest_event_at and g.latest_loaded_at else
                f"| {g.group} | v{g.version} | - | - | - | - | {_age(g.expectation.warn_after)} | "
                f"{_age(g.expectation.error_after)} | {g.level} |" for g in run.freshness), ""]
    return "\n".join(lines)


def write_report(settings: Settings, run: MonitoringRun) -> Path:
    """Read the run's span back from the monitoring tables, draw the charts, write the page; its path."""
    folder = report_dir(settings, run.model_name, run.version)
    folder.mkdir(parents=True, exist_ok=True)
    test = registry.get_metrics(settings, run.model_name, run.version).get("test", {})
    with opened(settings, read_only=True) as store:
        matrix = drift_matrix(store, run.model_name, run.version, run.drift.source, run.span)
        scores = score_distribution(store, run.model_name, run.version, run.drift.source, run.span)
        series = performance_series(store, run.model_name, run.version, run.span, test)
    name = f"{run.model_name} v{run.version}"
    hourly = run.drift.source == "online"
    charts = {
        "drift": plot_drift(folder / "drift.png", f"{name}: PSI per feature and "
                            f"{'hour' if hourly else 'day'}", matrix, hourly, run.thresholds.psi).name,
        "scores": plot_scores(folder / "scores.png", f"{name}: score, reference against monitored", scores).name,
    }
    if series.windows:
        charts["performance"] = plot_performance(folder / "performance.png", f"{name}: performance per day",
                                                 series).name
    else:
        (folder / "performance.png").unlink(missing_ok=True)
    path = folder / "report.md"
    path.write_text(markdown(run, matrix, scores, series, charts))
    return path
