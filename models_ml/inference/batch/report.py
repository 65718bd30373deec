"""The model's report, one Markdown file with its PNGs beside it, that a person would rather read than logs:
the model version's sections (:mod:`models_ml.training.report`: the label, metrics against the previous
champion and baselines, score distributions, thresholds, calibration, slices, missing features) and, from
batch inference, the missing-feature rates of the scored rows beside training's and, per day, the
predictions against their outcomes (mean score, actual rate, ROC-AUC) once the outcomes are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.batch.outcomes import DayOutcome, daily_outcomes
from models_ml.inference.batch.predict import HAS_MISSING, MISSING_GROUPS
from models_ml.offline.store import opened
from models_ml.training import plots, registry
from models_ml.training.report import ANY_GROUP, build_model_report

REPORT = "report.md"
DAILY_PNG = "predicted_vs_actual_by_day.png"


def plot_daily(rows: list[DayOutcome], path: Path, title: str) -> Path:
    """Mean predicted probability and actual rate per day (left axis, from 0), the rows scored and with an
    outcome per day as bars (right axis, from 0)."""
    figure, axes = plots.new_figure(8, 4)
    counts = axes.twinx()
    positions = np.arange(len(rows))
    counts.bar(positions - 0.2, [r.scored for r in rows], 0.4, color="grey", alpha=0.25, label="rows scored")
    counts.bar(positions + 0.2, [r.with_outcome for r in rows], 0.4, color="tab:green", alpha=0.2,
               label="rows with an outcome")
    counts.set_ylabel("rows per day")
    counts.set_ylim(bottom=0)
    axes.set_zorder(counts.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot(positions, [r.mean_score for r in rows], marker="o", label="mean predicted probability")
    axes.plot(positions, [np.nan if r.actual_rate is None else r.actual_rate for r in rows], marker="s",
              label="actual rate")
    top = max([r.mean_score for r in rows] + [r.actual_rate or 0.0 for r in rows] + [0.05])
    axes.set_ylim(0, min(1.0, top * 1.4))
    axes.set_xticks(positions, [str(r.day) for r in rows], rotation=30, ha="right", fontsize=8)
    axes.set(xlabel="day of the scheduled event", ylabel="share of rows", title=title)
    handles, labels = axes.get_legend_handles_labels()
    bar_handles, bar_labels = counts.get_legend_handles_labels()
    axes.legend(handles + bar_handles, labels + bar_labels, loc="upper left", fontsize=8)
    return plots.save(figure, path)


def scored_missing_rates(table: pa.Table, labels: list[str]) -> dict[str, float]:
    """Per feature group, the share of scored rows flagged missing it; :data:`ANY_GROUP`: any flag."""
    if table.num_rows == 0:
        return {}
    flat = pc.list_flatten(table[MISSING_GROUPS])
    counts = pc.value_counts(flat) if len(flat) else None
    found = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())) if counts else {}
    rates = {label: found.get(label, 0) / table.num_rows for label in labels}
    rates[ANY_GROUP] = float(pc.mean(pc.cast(table[HAS_MISSING], pa.float64())).as_py())
    return rates


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_report(
    settings: Settings,
    view: FeatureView,
    version: registry.ModelVersion,
    predictions: tuple[str, str],
    table_rows: dict[str, int],
    zone: str = "UTC",
) -> Path:
    """Write FTI_HOME/reports/<model>/report.md with its PNGs beside it; returns the report's path.

    ``predictions`` is the (schema, name) of the model's predictions table (the version's rows give the
    scored missing-feature rates); ``zone`` the calendar of the per-day outcomes."""
    directory = settings.reports_dir / version.model_name
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.png"):  # an earlier version's plots would sit beside the report unread
        stale.unlink()
    with opened(settings, read_only=True) as store:
        daily = daily_outcomes(store, view, predictions, zone)
        scored = store.table(*predictions)
        scored = store.to_arrow(scored.filter(scored["model_version"] == version.version)
                                .select(HAS_MISSING, MISSING_GROUPS))
    model = build_model_report(settings, view, version, directory,
                               scored_missing_rates(scored, view.group_labels))
    daily_png = plot_daily(daily, directory / DAILY_PNG,
                           f"{version.model_name} v{version.version}: predicted vs. actual, per day ({zone})")
    lines = [
        *model.head,
        "",
        *model.body,
        "",
        f"## Predictions and their outcomes, per day ({zone})",
        f"Rows scored by batch inference into `{'.'.join(predictions)}`, joined to `{view.label.model}` on "
        f"{', '.join(view.label.entity)} once the outcome ({view.label.target}) is known.",
        "",
        f"![predicted vs actual]({daily_png.name})",
        "",
        "| day | scored | with outcome | mean predicted | actual rate | ROC-AUC |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {d.day} | {d.scored:,} | {d.with_outcome:,} | {d.mean_score:.3f} | {_maybe(d.actual_rate)} | "
          f"{_maybe(d.roc_auc)} |" for d in daily],
        "",
        *model.tail,
        "",
        "## Tables",
        "| table | rows |",
        "|---|---:|",
        *[f"| {t} | {n:,} |" for t, n in sorted(table_rows.items())],
        "",
    ]
    report = directory / REPORT
    report.write_text("\n".join(lines))
    return report
