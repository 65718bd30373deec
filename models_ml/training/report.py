"""A short Markdown report of a model and its predictions, with PNG plots, that a person would rather read
than logs: test metrics, worst slices, the training plots, and predicted vs. actual rate per day."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureView
from models_ml.offline.store import OfflineStore, opened
from models_ml.training import registry


def daily_predicted_vs_actual(
    store: OfflineStore, view: FeatureView, predictions: tuple[str, str]
) -> list[tuple[dt.date, int, float, float | None]]:
    """(UTC day of the event time, rows, mean score, actual positive rate) for every predicted day of the
    ``(schema, name)`` predictions table, joined to the label on the entity keys."""
    label = view.label
    scored = store.table(*predictions).select(*label.entity, label.event_time, "score")
    labels = store.table(label.schema, label.relation).select(*label.entity, label.target)
    joined = scored.left_join(labels, list(label.entity))
    daily = joined.group_by(day=joined[label.event_time].date()).aggregate(  # the session time zone is UTC
        rows=joined.count(), mean_score=joined.score.mean(), actual=joined[label.target].cast("float64").mean(),
    ).order_by("day")
    return [(r["day"], r["rows"], r["mean_score"], r["actual"]) for r in store.to_arrow(daily).to_pylist()]


def plot_daily(rows: list[tuple], path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = [r[0] for r in rows]
    axes.plot(days, [r[2] for r in rows], marker="o", label="mean predicted probability")
    axes.plot(days, [r[3] for r in rows], marker="s", label="actual rate")
    axes.set_ylabel("share of flights")
    axes.set_title(title)
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


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
        daily = daily_predicted_vs_actual(store, view, predictions)
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
        "## Predicted vs. actual, per day",
        f"![predicted vs actual]({daily_png.name})",
        "",
        "| day (UTC) | flights | mean predicted | actual rate |",
        "|---|---:|---:|---:|",
        *[f"| {d} | {n:,} | {p:.3f} | {'-' if a is None else f'{a:.3f}'} |" for d, n, p, a in daily],
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
