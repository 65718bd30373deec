"""The comparison a person reads: a Markdown page and a chart of the log-loss difference over time.

Written to ``FTI_HOME/reports/compare/<model>/v<champion>-v<challenger>-<source>/`` (``report.md``,
``difference.png``); re-running replaces them, so the folder always shows the latest look.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from models_ml.core.settings import Settings
from models_ml.decisions.compare import Arm, Comparison
from models_ml.training import plots


def report_dir(settings: Settings, comparison: Comparison) -> Path:
    c = comparison
    return (settings.reports_dir / "compare" / c.model_name
            / f"v{c.champion.version}-v{c.challenger.version}-{c.source}")


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return f"[{_num(low, 5)}, {_num(high, 5)}]"


def plot_difference(path: Path, comparison: Comparison) -> Path:
    """The difference (challenger minus champion log loss) at each daily look with its interval, and zero."""
    looks = comparison.looks
    figure, axes = plots.new_figure(7.0, 4.0)
    x = np.arange(len(looks))
    y = np.array([look.difference for look in looks], dtype=float)
    low = np.array([look.interval.low for look in looks], dtype=float)
    high = np.array([look.interval.high for look in looks], dtype=float)
    finite = np.isfinite(low) & np.isfinite(high)
    axes.fill_between(x[finite], low[finite], high[finite], alpha=0.25, label="interval (this look)")
    axes.plot(x, y, marker="o", label="challenger − champion log loss")
    axes.axhline(0.0, color="grey", linewidth=0.8, linestyle=":", label="no difference")
    axes.set_xticks(x, [str(look.day) for look in looks], rotation=30, ha="right", fontsize=7)
    axes.set(xlabel="outcomes up to the end of (UTC day)", ylabel="difference of mean log loss",
             title=f"{comparison.model_name}: v{comparison.challenger.version} against "
                   f"v{comparison.champion.version} ({comparison.source}, {comparison.test})")
    axes.legend(fontsize=8)
    return plots.save(figure, path)


def _arm_row(name: str, arm: Arm) -> str:
    split = arm.test_split
    return (f"| {name} | v{arm.version} | {arm.scored:,} | {arm.labelled:,} | {_num(arm.log_loss)} | "
            f"{_num(arm.roc_auc)} | {_num(arm.brier)} | {_num(split.get('log_loss'))} | {_num(split.get('roc_auc'))} |")


def markdown(comparison: Comparison, chart: str) -> str:
    c, r = comparison, comparison.result
    lines = [
        f"# {c.model_name}: champion v{c.champion.version} against challenger v{c.challenger.version}",
        "",
        f"**Verdict: {c.verdict}** ({c.reason}).",
        "",
        *(f"**Warning**: {warning}\n" for warning in c.warnings),
        f"Source: {c.source}; test: {c.test}; outcomes from {c.spans.get('first')} to {c.spans.get('last')}.",
        "",
        "| model | version | scored | with outcome | log loss | ROC-AUC | Brier | test-split log loss | "
        "test-split ROC-AUC |",
        "|---|---|---|---|---|---|---|---|---|",
        _arm_row("champion", c.champion),
        _arm_row("challenger", c.challenger),
        "",
        f"Difference of mean log loss (challenger − champion): {_num(r.difference, 5)}"
        + (f" ({r.relative_difference:+.2%} of the champion's)" if r.relative_difference is not None else ""),
        f"Interval the verdict reads: {_interval(c.interval.low, c.interval.high)}",
    ]
    if hasattr(r, "p_value"):
        lines += [f"Paired t: p = {_num(r.p_value, 4)}, t interval "
                  f"{_interval(r.t_interval.low, r.t_interval.high)}, bootstrap interval "
                  f"{_interval(r.bootstrap_interval.low, r.bootstrap_interval.high)}"]
    else:
        lines += [f"mSPRT: likelihood ratio {r.likelihood_ratio:.3g} against 1/α = {1 / r.alpha:g} "
                  f"(mixture sd {r.mixture_sd:g}); intervals intersected over the daily looks"]
    lines += ["", f"![difference over time]({chart})", "", "| day | champion rows | challenger rows | difference | "
              "interval | significant |", "|---|---|---|---|---|---|"]
    lines += [f"| {look.day} | {look.champion_rows:,} | {look.challenger_rows:,} | {_num(look.difference, 5)} | "
              f"{_interval(look.interval.low, look.interval.high)} | {'yes' if look.significant else 'no'} |"
              for look in c.looks]
    return "\n".join(lines) + "\n"


def write_report(settings: Settings, comparison: Comparison) -> Path:
    """Write the page and its chart; the page's path."""
    folder = report_dir(settings, comparison)
    folder.mkdir(parents=True, exist_ok=True)
    chart = plot_difference(folder / "difference.png", comparison)
    path = folder / "report.md"
    path.write_text(markdown(comparison, chart.name))
    return path
