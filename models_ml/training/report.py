"""A model version's report: what a data scientist checks before trusting it, as Markdown sections with PNGs.

Built from the registry and the version's own training snapshot (the same train / validation / test rows,
cut where the registry recorded), so it can be written at any time after training:

* **the label**: what is predicted, from the view's label spec and the dbt descriptions of the label model,
  its target column and the view (exposure), with the positive rate of each split;
* **metrics against references** on the test rows: the previous champion (the version that was champion
  when this one was trained and was compared with it at the gate, when there was one) and two baselines
  fitted on the training split alone: the **base rate** (every row scored with the training positive rate:
  ROC-AUC 0.5, the log loss and Brier score to beat) and the **best single feature** (each model feature
  cut into training deciles, or its categories, each bin scored with its smoothed training positive rate;
  the feature with the highest validation ROC-AUC is kept and scored on test);
* **score distribution by class**, the **threshold view** (precision, recall and share flagged against the
  threshold; precision, recall and lift at the top k % of rows), **calibration** with the rows per bin,
  **ROC-AUC per slice** (the view's slice columns, as evaluated at training) and feature importance;
* **missing features**: per feature group, the share of rows where every feature the view takes from it is
  NULL (no row of the group within its TTL), in the training and test splits, beside the scored rows' rate
  when the caller passes it (batch inference flags exactly those rows, ``missing_feature_groups``).

The Markdown goes to the caller (:mod:`models_ml.inference.batch.report` adds the predictions' outcomes and
writes one file); the PNGs are written into ``directory`` beside it, named ``<model>_v<version>_<kind>.png``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureView
from models_ml.offline.store import opened_with_state
from models_ml.training import evaluate as ev
from models_ml.training import plots, registry
from models_ml.training import snapshot as sn
from models_ml.training import splits as sp
from models_ml.training import train as tr

ANY_GROUP = "any group"
_SMOOTHING = 20.0  # rows of the prior added to every bin of the one-feature baseline
_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")


# --------------------------------------------------------------------------------------------------
# Baselines


@dataclass(frozen=True)
class Baseline:
    """A simple scorer of the test rows that the model must beat, fitted on the training split only."""

    name: str
    description: str
    metrics: ev.Metrics
    scores: np.ndarray = field(repr=False)


def base_rate_baseline(y_train: np.ndarray, y_test: np.ndarray, bins: int = 10) -> Baseline:
    rate = float(np.mean(y_train))
    scores = np.full(len(y_test), rate)
    return Baseline("base rate", f"every row scored {rate:.4f}, the training split's positive rate",
                    ev.compute_metrics(y_test, scores, bins), scores)


def _bins(train: np.ndarray, others: Sequence[np.ndarray], categorical: bool,
          quantiles: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Bin numbers of one feature's values (NaN in a bin of its own): categories as they are, numbers by
    the training split's quantiles."""
    if categorical:
        width = int(np.nanmax(train)) + 1 if np.isfinite(train).any() else 0

        def cut(values: np.ndarray) -> np.ndarray:
            known = np.isfinite(values) & (values < width)
            return np.where(known, np.nan_to_num(values), width).astype(np.int64)
    else:
        finite = train[np.isfinite(train)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, quantiles + 1)[1:-1])) if finite.size else np.empty(0)
        width = edges.size + 1

        def cut(values: np.ndarray) -> np.ndarray:
            return np.where(np.isfinite(values), np.searchsorted(edges, values, side="right"), width)
    return cut(train), [cut(v) for v in others], width + 1


def one_feature_baseline(spec: tr.ModelSpec, train: pa.Table, validation: pa.Table, test: pa.Table,
                         bins: int = 10, quantiles: int = 10) -> Baseline | None:
    """The best single feature of the model's input (``spec``, whose encoding it shares) as a scorer: each
    bin of it scored with its smoothed training rate; the feature that ranks the validation split best
    (ROC-AUC, which a shift of the base rate between splits does not move) is kept. None without features."""
    y_train, y_validation, y_test = (tr.target_array(t, spec.target) for t in (train, validation, test))
    matrices = [tr.feature_matrix(t, spec) for t in (train, validation, test)]
    prior = float(np.mean(y_train))
    best: tuple[float, str, np.ndarray] | None = None
    for j, name in enumerate(spec.features):
        train_bins, (validation_bins, test_bins), width = _bins(
            matrices[0][:, j], [matrices[1][:, j], matrices[2][:, j]], name in spec.categories, quantiles)
        rows = np.bincount(train_bins, minlength=width)
        positives = np.bincount(train_bins, weights=y_train, minlength=width)
        rates = (positives + _SMOOTHING * prior) / (rows + _SMOOTHING)
        auc = ev.roc_auc(y_validation, rates[validation_bins])
        if auc is not None and (best is None or auc > best[0]):
            best = (auc, name, rates[test_bins])
    if best is None:
        return None
    _, name, scores = best
    kind = "its categories" if name in spec.categories else f"{quantiles} training quantile bins"
    return Baseline(f"one feature: {name}",
                    f"`{name}` alone ({kind}, each scored with its smoothed training positive rate; the feature "
                    f"with the highest validation ROC-AUC of the {len(spec.features)})",
                    ev.compute_metrics(y_test, scores, bins), scores)


# --------------------------------------------------------------------------------------------------
# Missing features


def group_missing_rates(table: pa.Table, view: FeatureView) -> dict[str, float]:
    """Per feature group (the view's group labels, as batch inference names them), the share of rows where
    every feature taken from it is NULL, and under :data:`ANY_GROUP` the share with at least one such group."""
    if table.num_rows == 0:
        return {}
    rates: dict[str, float] = {}
    any_missing = np.zeros(table.num_rows, dtype=bool)
    for label, ref in zip(view.group_labels, view.features):
        columns = [ref.output_name(f) for f in ref.features if ref.output_name(f) in table.column_names]
        if not columns:
            continue
        missing = np.ones(table.num_rows, dtype=bool)
        for column in columns:
            missing &= pc.is_null(table[column], nan_is_null=True).to_numpy(zero_copy_only=False)
        rates[label] = float(missing.mean())
        any_missing |= missing
    rates[ANY_GROUP] = float(any_missing.mean())
    return rates


# --------------------------------------------------------------------------------------------------
# The label


def label_definition(settings: Settings, view: FeatureView) -> list[str]:
    """Markdown lines saying what is predicted: the view's label spec and the dbt descriptions (from the
    parsed manifest, when the project has one) of the view, its label model and the target column."""
    label = view.label
    texts: dict[str, str] = {}
    if settings.manifest_path.exists():
        manifest = json.loads(settings.manifest_path.read_text())
        for node in manifest.get("nodes", {}).values():
            if node.get("resource_type") == "model" and node.get("name") == label.model:
                texts["label model"] = (node.get("description") or "").strip()
                column = (node.get("columns") or {}).get(label.target) or {}
                texts["target column"] = (column.get("description") or "").strip()
        for exposure in manifest.get("exposures", {}).values():
            if exposure.get("name") == view.name:
                texts["view"] = ": ".join(filter(None, [(exposure.get("label") or "").strip(),
                                                       (exposure.get("description") or "").strip()]))
    texts.setdefault("view", view.description)
    lines = [f"- **target**: `{label.target}` of `{label.model}` ({label.qualified_relation}), one row per "
             f"{', '.join(f'`{k}`' for k in label.entity)}",
             f"- **predicted at** `{label.spine_time}` (the point-in-time as-of of every feature); the outcome "
             f"belongs to `{label.event_time}`"]
    lines += [f"- **{what}**: {' '.join(text.split())}" for what, text in texts.items() if text]
    return lines


# --------------------------------------------------------------------------------------------------
# The report


@dataclass
class ModelReport:
    """The model's Markdown sections, in reading order (``head``: the label and metrics against references;
    ``body``: scores by class, thresholds, calibration, slices, missing features; ``tail``: feature
    importance and the gate), and the PNGs written; a caller places its own sections between them."""

    head: list[str]
    body: list[str]
    tail: list[str]
    plots: dict[str, Path]
    missing: dict[str, dict[str, float]]  # split -> group label -> share of rows


def previous_champion(version: registry.ModelVersion) -> int | None:
    """The champion this version was compared with when it was trained (its evaluation's record), if any."""
    path = version.model_dir / "evaluation.json"
    if not path.exists():
        return None
    champion = (json.loads(path.read_text()).get("evaluation") or {}).get("champion") or {}
    return int(champion["version"]) if champion.get("version") else None


def _load(settings: Settings, version: registry.ModelVersion) -> sp.Splits:
    split = version.split
    cuts = sp.TimeSplit(split["validation_start"], split["test_start"]) if split.get("test_start") else None
    with opened_with_state(settings) as (store, state):
        return sp.load_splits(store, sn.get_snapshot(state, version.snapshot_id), cuts)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _image(path: Path, alt: str) -> str:
    return f"![{alt}]({path.name})"


def build_model_report(settings: Settings, view: FeatureView, version: registry.ModelVersion, directory: Path,
                       scored_missing: Mapping[str, float] | None = None) -> ModelReport:
    """Re-score the version's test rows (beside its previous champion and the baselines), draw every plot
    into ``directory`` and return the report's sections. ``scored_missing``: the missing-group rates of
    the rows batch inference scored, shown beside training's."""
    name, number = version.model_name, version.version
    splits = _load(settings, version)
    model = tr.load_model(version.model_dir)
    config = tr.config_from_mapping(ev.EvaluationConfig, view.training.as_dict().get("evaluation"))
    champion_number = previous_champion(version)
    champion = registry.load(settings, name, champion_number)[1] if champion_number else None
    evaluation = ev.evaluate_model(model, splits.test, splits.snapshot.slices, config, champion=champion,
                                   champion_version=champion_number)
    y = evaluation.y_true
    y_train = tr.target_array(splits.train, model.spec.target)
    baselines = [base_rate_baseline(y_train, y, config.calibration_bins)]
    single = one_feature_baseline(model.spec, splits.train, splits.validation, splits.test, config.calibration_bins)
    baselines += [single] if single else []

    directory.mkdir(parents=True, exist_ok=True)
    label = f"{name} v{number}"
    drawn = ev.save_plots(evaluation, directory, name, number, baselines={b.name: b.scores for b in baselines})
    drawn.update(_extra_plots(evaluation, directory, name, number))
    missing = {"train": group_missing_rates(splits.train, view), "test": group_missing_rates(splits.test, view)}
    if scored_missing:
        missing["scored"] = dict(scored_missing)
    if missing["train"]:
        drawn["missing"] = plots.grouped_bars(
            directory / f"{name}_v{number}_missing.png", f"Rows with a feature group missing: {label}",
            "share of rows", list(missing["train"]), {
                {"train": "training split", "test": "test split", "scored": "scored by batch inference"}[k]:
                    [rates.get(g, 0.0) for g in missing["train"]] for k, rates in missing.items()})

    rows = {part: getattr(splits, part).num_rows for part in sp.SPLIT_NAMES}
    rates = {part: float(np.mean(tr.target_array(getattr(splits, part), model.spec.target)))
             for part in sp.SPLIT_NAMES}
    head = [
        f"# {label}",
        "",
        f"Feature view `{version.feature_view}` v{version.feature_view_version}, snapshot `{version.snapshot_id}`, "
        f"code `{version.code_version}`, trained {version.created_at:%Y-%m-%d %H:%M} UTC; aliases: "
        f"{', '.join(version.aliases) or 'none'}.",
        "",
        "## What is predicted",
        *label_definition(settings, view),
        "- **positive rate**: " + ", ".join(f"{part} {rates[part]:.3f} of {rows[part]:,} rows" for part in rows)
        + f" (test from {splits.test_start:%Y-%m-%d %H:%M} UTC)",
        "",
        *_metrics_section(evaluation, baselines, champion_number),
        "",
        _image(drawn["roc"], "ROC"), _image(drawn["pr"], "precision-recall"),
    ]
    body = [
        *_scores_section(evaluation, drawn),
        "",
        *_threshold_section(evaluation, drawn),
        "",
        *_calibration_section(evaluation, drawn),
        "",
        *_slice_section(evaluation, drawn),
        "",
        *_missing_section(missing, drawn),
    ]
    tail = [
        "## Feature importance",
        _image(drawn["importance"], "feature importance"),
        "",
        *_gate_section(version),
    ]
    return ModelReport(head, body, tail, drawn, missing)


def _extra_plots(evaluation: ev.Evaluation, directory: Path, name: str, number: int) -> dict[str, Path]:
    """Score distribution by class, the threshold view, lift, and ROC-AUC per slice."""
    y, p, m = evaluation.y_true, evaluation.y_score, evaluation.metrics
    label = f"{name} v{number}"

    def path(kind: str) -> Path:
        return directory / f"{name}_v{number}_{kind}.png"

    drawn = {"scores": plots.class_histograms(path("scores"), f"Score by actual class, test: {label}",
                                              {"positive (1)": p[y == 1], "negative (0)": p[y == 0]})}
    curve = ev.threshold_curve(y, p)
    drawn["thresholds"] = plots.lines(
        path("thresholds"), f"Flagging score >= threshold, test: {label}", "threshold", "share", [
            plots.Series(curve.thresholds, curve.precision, "precision"),
            plots.Series(curve.thresholds, curve.recall, "recall"),
            plots.Series(curve.thresholds, curve.flagged, "share of rows flagged", dashed=True),
        ], hline=(m.positive_rate, f"base rate {m.positive_rate:.3f}"), legend="upper right")
    top = ev.top_fractions(y, p, np.linspace(0.01, 1.0, 100))
    drawn["lift"] = plots.lines(
        path("lift"), f"Lift at the top k % by score, test: {label}", "share of rows flagged (top k %)",
        "lift (precision / base rate)",
        [plots.Series([t.fraction for t in top], [t.lift or 0.0 for t in top], label)],
        hline=(1.0, "no lift (random order)"), ylim=(0, max([t.lift or 0.0 for t in top] + [1.0]) * 1.1),
        legend="upper right")
    if evaluation.slices:
        ranked = sorted(evaluation.slices, key=lambda s: (s.column, -(s.metrics.roc_auc or 0)))
        drawn["slices"] = plots.horizontal_bars(
            path("slices"), f"ROC-AUC per slice, test: {label}", "ROC-AUC",
            [f"{s.column}={s.value}" for s in ranked], [s.metrics.roc_auc or 0.0 for s in ranked],
            notes=[f"{s.metrics.roc_auc:.3f}, {s.metrics.rows:,} rows" for s in ranked],
            reference=(m.roc_auc or 0.5, f"all test rows {_fmt(m.roc_auc, 3)}"), xlim=(0, 1.15))
    return drawn


def _metrics_section(evaluation: ev.Evaluation, baselines: Sequence[Baseline], champion_number: int | None) -> list[str]:
    m, champion = evaluation.metrics, evaluation.champion
    columns: list[tuple[str, ev.Metrics | None]] = [("this model", m)]
    if champion is not None:
        columns.append((f"previous champion v{champion.version}", champion.metrics))
    columns += [(b.name, b.metrics) for b in baselines]
    lines = [f"## Test metrics ({m.rows:,} rows, positive rate {m.positive_rate:.3f}): against references", "",
             "| metric | " + " | ".join(name for name, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for metric in (*_METRICS, "mean_score"):
        lines.append(f"| {metric} | " + " | ".join(_fmt(c.get(metric) if c else None) for _, c in columns) + " |")
    lines.append("")
    if champion is None:
        lines.append("- **previous champion**: none; this version was trained when the model had no champion.")
    elif champion.metrics is None:
        lines.append(f"- **previous champion** v{champion.version}: not comparable ({champion.note}).")
    else:
        gain = (m.roc_auc or 0) - (champion.metrics.roc_auc or 0)
        lines.append(f"- **previous champion** v{champion.version}, the champion when this version was trained, "
                     f"scored on the same test rows: ROC-AUC {gain:+.4f} for this model.")
    for baseline in baselines:
        lines.append(f"- **{baseline.name}**: {baseline.description}.")
    return lines


def _scores_section(evaluation: ev.Evaluation, drawn: Mapping[str, Path]) -> list[str]:
    y, p = evaluation.y_true, evaluation.y_score
    quantiles = (0.1, 0.25, 0.5, 0.75, 0.9)
    lines = ["## Score distribution by class", "", _image(drawn["scores"], "scores by class"), "",
             "| actual class | rows | mean | " + " | ".join(f"p{int(q * 100)}" for q in quantiles) + " |",
             "|---|---:|---:|" + "---:|" * len(quantiles)]
    for name, values in (("positive (1)", p[y == 1]), ("negative (0)", p[y == 0])):
        shown = np.quantile(values, quantiles) if values.size else [None] * len(quantiles)
        lines.append(f"| {name} | {values.size:,} | {_fmt(float(values.mean()) if values.size else None, 3)} | "
                     + " | ".join(_fmt(None if v is None else float(v), 3) for v in shown) + " |")
    return lines


def _threshold_section(evaluation: ev.Evaluation, drawn: Mapping[str, Path]) -> list[str]:
    lines = ["## Thresholds: precision, recall and lift at the top k %", "",
             _image(drawn["thresholds"], "precision and recall against the threshold"),
             _image(drawn["lift"], "lift at the top k %"), "",
             "| top k % by score | rows | threshold (score >=) | precision | recall | lift |",
             "|---:|---:|---:|---:|---:|---:|"]
    for t in ev.top_fractions(evaluation.y_true, evaluation.y_score):
        lines.append(f"| {t.fraction:.0%} | {t.rows:,} | {t.threshold:.3f} | {t.precision:.3f} | {t.recall:.3f} | "
                     f"{_fmt(t.lift, 2)} |")
    return lines


def _calibration_section(evaluation: ev.Evaluation, drawn: Mapping[str, Path]) -> list[str]:
    lines = [f"## Calibration: predicted against actual (ECE {evaluation.metrics.ece:.4f})", "",
             _image(drawn["calibration"], "calibration"), "",
             "| score bin | rows | mean predicted | actual rate |", "|---|---:|---:|---:|"]
    for b in evaluation.calibration:
        lines.append(f"| [{b.lower:.1f}, {b.upper:.1f}) | {b.rows:,} | {_fmt(b.mean_score, 3)} | "
                     f"{_fmt(b.positive_rate, 3)} |")
    return lines


def _slice_section(evaluation: ev.Evaluation, drawn: Mapping[str, Path]) -> list[str]:
    if not evaluation.slices:
        return ["## Slices", "", "No slice had enough rows of both classes to evaluate."]
    lines = ["## Slices (ROC-AUC per slice, worst first)", "", _image(drawn["slices"], "ROC-AUC per slice"), "",
             "| slice | rows | positive rate | mean score | roc_auc | ece |", "|---|---:|---:|---:|---:|---:|"]
    for s in sorted(evaluation.slices, key=lambda s: s.metrics.roc_auc if s.metrics.roc_auc is not None else 1)[:10]:
        lines.append(f"| {s.column}={s.value} | {s.metrics.rows:,} | {s.metrics.positive_rate:.3f} | "
                     f"{s.metrics.mean_score:.3f} | {_fmt(s.metrics.roc_auc)} | {_fmt(s.metrics.ece)} |")
    if evaluation.skipped_slices:
        lines += ["", f"{len(evaluation.skipped_slices)} slices skipped (fewer rows than the minimum, or one class)."]
    return lines


def _missing_section(missing: Mapping[str, Mapping[str, float]], drawn: Mapping[str, Path]) -> list[str]:
    groups = list(missing.get("train", {}))
    if not groups:
        return []
    parts = list(missing)
    lines = ["## Missing features: training against inference", "",
             "Share of rows where a feature group had no row within its TTL (every feature taken from it NULL); "
             "the model learnt from such rows, so the rates in training and in scoring should agree.", "",
             _image(drawn["missing"], "missing feature groups"), "",
             "| feature group | " + " | ".join(parts) + " |", "|---|" + "---:|" * len(parts)]
    for group in groups:
        lines.append(f"| {group} | " + " | ".join(f"{missing[part].get(group, 0.0):.1%}" for part in parts) + " |")
    if "scored" in missing:
        gap = missing["scored"].get(ANY_GROUP, 0.0) - missing["train"][ANY_GROUP]
        lines += ["", f"Scored rows with a group missing: {missing['scored'].get(ANY_GROUP, 0.0):.1%} against "
                      f"{missing['train'][ANY_GROUP]:.1%} in training ({gap:+.1%})."]
    return lines


def _gate_section(version: registry.ModelVersion) -> list[str]:
    checks = (version.gate or {}).get("checks") or []
    lines = [f"## Gate at registration: {'passed' if version.gate_passed else 'failed'}", "",
             "| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'yes' if c['passed'] else '**no**'} | {c.get('detail', '')} |" for c in checks]
    return lines

