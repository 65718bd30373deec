"""The report's chart kinds, drawn from plain numbers: lines, per-class histograms, bars, calibration.

Each function writes one titled, labelled, legended PNG and returns its path; the numbers come from the
evaluation (models_ml.training.evaluate) or the report (models_ml.training.report), which decide what is
drawn. matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so plots are safe
in worker threads and headless runs; matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Series:
    """One line of a line chart: ``step`` draws a step (precision-recall), ``dashed`` marks a comparison."""

    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    label: str
    step: bool = False
    dashed: bool = False
    marker: str | None = None


def new_figure(width: float = 5.5, height: float = 5.0) -> tuple[Any, Any]:
    """A figure with its Agg canvas and one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    return path


def lines(path: Path, title: str, xlabel: str, ylabel: str, series: Sequence[Series], *,
          diagonal: bool = False, hline: tuple[float, str] | None = None,
          xlim: tuple[float, float] | None = (0, 1), ylim: tuple[float, float] | None = (0, 1.02),
          legend: str = "best") -> Path:
    """A line chart; ``diagonal`` adds y = x (chance on ROC), ``hline`` a labelled reference level."""
    figure, axes = new_figure()
    for s in series:
        style = {"linestyle": "--" if s.dashed else "-", "label": s.label, "marker": s.marker}
        if s.step:
            axes.step(s.x, s.y, where="post", **style)
        else:
            axes.plot(s.x, s.y, **style)
    if diagonal:
        axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="chance")
    if hline is not None:
        axes.axhline(hline[0], color="grey", linewidth=0.8, linestyle=":", label=hline[1])
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if xlim:
        axes.set_xlim(*xlim)
    if ylim:
        axes.set_ylim(*ylim)
    axes.legend(loc=legend, fontsize=8)
    return save(figure, path)


def class_histograms(path: Path, title: str, scores: Mapping[str, np.ndarray], bins: int = 20) -> Path:
    """The score's distribution within each class, as shares of the class (so a rare class stays visible)."""
    figure, axes = new_figure(6.0, 4.5)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for label, values in scores.items():
        weights = np.full(len(values), 1.0 / max(len(values), 1))
        axes.hist(values, bins=edges, weights=weights, histtype="stepfilled", alpha=0.35,
                  label=f"{label} ({len(values):,} rows, mean {np.mean(values) if len(values) else 0:.3f})")
    axes.set(xlabel="predicted probability", ylabel="share of the class's rows", title=title, xlim=(0, 1))
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    return save(figure, path)


def horizontal_bars(path: Path, title: str, xlabel: str, labels: Sequence[str], values: Sequence[float], *,
                    notes: Sequence[str] | None = None, reference: tuple[float, str] | None = None,
                    xlim: tuple[float, float] | None = None) -> Path:
    """One bar per label (top to bottom in the given order), each optionally annotated (``notes``)."""
    figure, axes = new_figure(7.0, max(3.0, 0.32 * len(labels) + 1.2))
    positions = np.arange(len(labels))[::-1]
    axes.barh(positions, values, label=xlabel)
    axes.set_yticks(positions, labels)
    axes.tick_params(axis="y", labelsize=8)
    for position, value, note in zip(positions, values, notes or ()):
        axes.annotate(note, (value, position), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    if reference is not None:
        axes.axvline(reference[0], color="grey", linestyle="--", linewidth=0.8, label=reference[1])
    axes.set(xlabel=xlabel, title=title)
    if xlim:
        axes.set_xlim(*xlim)
    axes.legend(loc="best", fontsize=8)
    return save(figure, path)


def grouped_bars(path: Path, title: str, ylabel: str, categories: Sequence[str],
                 series: Mapping[str, Sequence[float]]) -> Path:
    """Bars of several series side by side per category (e.g. a rate in training and in inference)."""
    figure, axes = new_figure(max(5.5, 1.1 * len(categories) + 2), 4.5)
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        bars = axes.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        axes.bar_label(bars, labels=[f"{v:.1%}" for v in values], fontsize=7)
    axes.set_xticks(positions, categories, rotation=20, ha="right", fontsize=8)
    axes.set(ylabel=ylabel, title=title)
    axes.set_ylim(0, max(1e-9, *(max(v, default=0) for v in series.values())) * 1.15 + 0.01)
    axes.legend(fontsize=8)
    return save(figure, path)


def calibration(path: Path, title: str, bins: Sequence[tuple[float, float, int, float | None, float | None]],
                label: str) -> Path:
    """Observed positive rate against mean score per bin ``(lower, upper, rows, mean_score, positive_rate)``:
    both axes from 0, the rows of each bin as grey bars (right axis, from 0) and written above its point."""
    figure, axes = new_figure()
    counts = axes.twinx()
    counts.bar([(lower + upper) / 2 for lower, upper, *_ in bins], [rows for _, _, rows, *_ in bins],
               width=1 / max(len(bins), 1), alpha=0.15, color="grey", label="rows per bin (right axis)")
    counts.set_ylabel("rows per bin")
    counts.set_ylim(bottom=0)
    axes.set_zorder(counts.get_zorder() + 1)
    axes.patch.set_visible(False)
    filled = [b for b in bins if b[2]]
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfect")
    axes.plot([b[3] for b in filled], [b[4] for b in filled], marker="o", label=label)
    for _, _, rows, mean_score, positive_rate in filled:
        axes.annotate(f"n={rows:,}", (mean_score, positive_rate), xytext=(0, 6), textcoords="offset points",
                      ha="center", fontsize=7)
    axes.set(xlabel="mean predicted probability", ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1),
             title=title)
    handles = axes.get_legend_handles_labels()
    bar_handles = counts.get_legend_handles_labels()
    axes.legend(handles[0] + bar_handles[0], handles[1] + bar_handles[1], loc="upper left", fontsize=8)
    return save(figure, path)
