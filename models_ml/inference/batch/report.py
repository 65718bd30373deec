"""A short Markdown report of a model and its predictions, with PNG plots, that a person would rather read
than logs: test metrics, worst slices, the training plots, and per day the predictions against their
outcomes (mean score, actual rate, ROC-AUC) once the outcomes are known."""

from __future__ import annotations

import shutil
from pathlib import Path

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.batch.outcomes import DayOutcome, daily_outcomes
from models_ml.offline.store import opened
from models_ml.training import registry


def plot_daily(rows: list[DayOutcome], path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = [r.day for r in rows]
    axes.plot(days, [r.mean_score for r in rows], marker="o", label="mean predicted probability")
    axes.plot(days, [r.actual_rate for r in rows], marker="s", label="actual rate")
    axes.set_ylabel("share of rows")
    axes.set_title(title)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _metrics_table(metrics: dict[str, float | None]) -> list[str]:
    lines = ["| metric | value |", "|---|---:|"]
    for name, value in metrics.items():
        if value is None:
            continue
        shown = f"{int(value):,}" if name in {"rows", "positives"} else f"{value:.4f}"
        lines.append(f"| {name} | {shown} |")
    return lines


def write_report(
    settings: Settings,
    view: FeatureView,
    version: registry.ModelVersion,
    predictions: tuple[str, str],
    table_rows: dict[str, int],
) -> Path:
    """Write FTI_HOME/reports/<model>/report.md with its PNGs beside it; returns the report's path.

    ``predictions`` is the (schema, name) of the model's predictions table."""
    directory = settings.reports_dir / version.model_name
    directory.mkdir(parents=True, exist_ok=True)
    for plot in sorted(version.model_dir.glob("*.png")):
        shutil.copy2(plot, directory / plot.name)
    with opened(settings, read_only=True) as store:
        daily = daily_outcomes(store, view, predictions)
    daily_png = plot_daily(daily, directory / "predicted_vs_actual_by_day.png",
                           f"{version.model_name} v{version.version}: predicted vs. actual, per day")
    metrics = registry.get_metrics(settings, version.model_name, version.version).get("test", {})
    slices = registry.get_slice_metrics(settings, version.model_name, version.version)[:3]

    lines = [
        f"# {version.model_name} v{version.version}",
        "",
        f"Feature view `{version.feature_view}` v{version.feature_view_version}, snapshot "
        f"`{version.snapshot_id}`, code `{version.code_version}`, trained {version.created_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "## Test metrics (time-split test set)",
        *_metrics_table(metrics),
        "",
        "## Worst slices (ROC-AUC)",
        "| slice | rows | ROC-AUC |",
        "|---|---:|---:|",
        *[f"| {s['slice_column']}={s['slice_value']} | {int(s['rows'] or 0):,} | {s['roc_auc'] or 0:.4f} |"
          for s in slices],
        "",
        "## Predictions and their outcomes, per day",
        f"Rows scored by batch inference into `{'.'.join(predictions)}`, joined to `{view.label.model}` on "
        f"{', '.join(view.label.entity)} once the outcome ({view.label.target}) is known.",
        "",
        f"![predicted vs actual]({daily_png.name})",
        "",
        "| day (UTC) | scored | with outcome | mean predicted | actual rate | ROC-AUC |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {d.day} | {d.scored:,} | {d.with_outcome:,} | {d.mean_score:.3f} | {_maybe(d.actual_rate)} | "
          f"{_maybe(d.roc_auc)} |" for d in daily],
        "",
        "## Model plots",
        *[f"![{p.stem}]({p.name})" for p in sorted(directory.glob("*.png")) if p != daily_png],
        "",
        "## Tables",
        "| table | rows |",
        "|---|---:|",
        *[f"| {t} | {n:,} |" for t, n in sorted(table_rows.items())],
        "",
    ]
    report = directory / "report.md"
    report.write_text("\n".join(lines))
    return report
