"""Prefect flow of the training pipeline: snapshot -> train -> evaluate -> register -> promote or not.

Thin wiring of models_ml functions. The candidate is always registered; it becomes `champion` only when it
passes the gate (thresholds from the model's config, and not worse than the current champion on the same
test rows), otherwise `challenger`. Plots are saved with the version's files, and a markdown artifact
summarises metrics, worst slice and the gate. Only steps that touch files or the warehouse retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from models_ml.core.settings import Settings, load_settings
from models_ml.core.time import TimeRange
from models_ml.core.timing import Laps
from models_ml.definitions.catalog import load_catalog
from models_ml.training import evaluate as ev
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import Splits, TimeSplit, load_splits


def _is_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: file and lock errors (another process holding the warehouse)."""
    try:
        state.result()
    except (OSError, duckdb.IOException):
        return True
    except Exception:  # noqa: BLE001 - anything else is a bug or bad data; retrying would hide it
        return False
    return False


# Tables and models are passed between tasks in memory: hashing them for a cache key would be slow.
_IO = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": _is_io_error, "cache_policy": NO_CACHE}
_CPU = {"cache_policy": NO_CACHE}


@task(name="build-snapshot", **_IO)
def build_snapshot_task(settings: Settings, view: str, time_range: TimeRange) -> sn.SnapshotInfo:
    feature_view = load_catalog(settings).view(view)
    con = sn.connect(settings)
    try:
        info = sn.build_snapshot(con, feature_view, time_range)
    finally:
        con.disconnect()
    get_run_logger().info("snapshot %s: %s rows, hash %s%s", info.snapshot_id, f"{info.row_count:,}",
                          info.content_hash[:12], " (reused)" if info.reused else "")
    return info


@task(name="load-splits", **_IO)
def load_splits_task(settings: Settings, info: sn.SnapshotInfo, split: TimeSplit) -> Splits:
    con = sn.connect(settings)
    try:
        splits = load_splits(con, info, split)
    finally:
        con.disconnect()
    get_run_logger().info("splits: %s", splits.as_dict())
    return splits


@task(name="train", **_CPU)
def train_task(splits: Splits, config: tr.TrainConfig) -> tr.Model:
    info = splits.snapshot
    model = tr.train_model(
        splits.train, splits.validation, features=info.feature_columns, target=info.target, config=config,
        feature_view=info.feature_view, feature_view_version=info.feature_view_version,
    )
    get_run_logger().info("trained %d trees in %.1f s; at best iteration %s", model.best_iteration,
                          model.training_seconds or 0, model.best_scores())
    return model


@task(name="load-champion", **_IO)
def load_champion_task(settings: Settings, model_name: str) -> tuple[int, tr.Model] | None:
    if registry.CHAMPION not in registry.get_aliases(settings, model_name):
        return None
    version, model = registry.load(settings, model_name, registry.CHAMPION)
    return version.version, model


@task(name="evaluate", **_CPU)
def evaluate_task(model: tr.Model, splits: Splits, config: ev.EvaluationConfig,
                  champion: tuple[int, tr.Model] | None) -> tuple[ev.Evaluation, ev.Metrics]:
    validation = ev.compute_metrics(tr.target_array(splits.validation, model.spec.target),
                                    model.predict(splits.validation), config.calibration_bins)
    evaluation = ev.evaluate_model(
        model, splits.test, splits.snapshot.slices, config,
        champion=champion[1] if champion else None, champion_version=champion[0] if champion else None,
    )
    m = evaluation.metrics
    shown = {name: "undefined" if value is None else f"{value:.4f}"  # AUCs are undefined on one class
             for name, value in (("roc_auc", m.roc_auc), ("pr_auc", m.pr_auc), ("log_loss", m.log_loss),
                                 ("brier", m.brier), ("ece", m.ece))}
    get_run_logger().info("test: %s", ", ".join(f"{k} {v}" for k, v in shown.items()))
    return evaluation, validation


@task(name="register", **_IO)
def register_task(settings: Settings, model_name: str, model: tr.Model, evaluation: ev.Evaluation,
                  gate: ev.GateResult, splits: Splits, config: tr.TrainConfig,
                  validation: ev.Metrics) -> registry.ModelVersion:
    info = splits.snapshot
    lineage = registry.Lineage(
        feature_view=info.feature_view, feature_view_version=info.feature_view_version,
        feature_group_versions=info.feature_group_versions, snapshot_id=info.snapshot_id,
        snapshot_hash=info.content_hash,
        split={**splits.as_dict(), "start": info.time_range.start.isoformat(), "end": info.time_range.end.isoformat()},
    )
    version = registry.register_model(
        settings, model_name, model, evaluation, gate, lineage,
        train_config=config.as_dict(),
        validation_metrics=validation.as_dict(),
        write_artifacts=lambda directory, number: ev.save_plots(evaluation, directory, model_name, number),
    )
    get_run_logger().info("registered %s v%d in %s", model_name, version.version, version.model_dir)
    return version


@task(name="set-alias", **_IO)
def alias_task(settings: Settings, model_name: str, version: int, gate: ev.GateResult, promote: bool) -> str:
    if gate.passed and promote:
        registry.promote(settings, model_name, version, registry.CHAMPION, reason="gate passed",
                         catalog=load_catalog(settings))
        return registry.CHAMPION
    registry.set_alias(settings, model_name, registry.CHALLENGER, version, reason=gate.summary())
    return registry.CHALLENGER


@flow(name="training")
def training(
    view: str = "flight_delay",
    start: str | None = None,
    end: str | None = None,
    validation_start: str | None = None,
    test_start: str | None = None,
    fractions: Sequence[float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    gate_overrides: Mapping[str, Any] | None = None,
    promote: bool = True,
    home: str | None = None,
) -> dict[str, Any]:
    """Train a new version of the model behind feature view `view` and decide its alias.

    The time range ``[start, end)`` and the cut dates (ISO dates, UTC, on the spine time) default to the
    model's config file; ``fractions`` (train, validation, test) replace the cut dates; ``overrides`` and
    ``gate_overrides`` replace hyperparameters and gate thresholds.
    """
    logger = get_run_logger()
    settings = load_settings(home)
    config = tr.read_config(view)
    split_config = config.get("split", {})
    start, end = start or split_config.get("start"), end or split_config.get("end")
    if not (start and end):
        raise ValueError(f"no time range for {view}: pass start and end or set [split] in its config")
    if fractions:
        split = TimeSplit(fractions=tuple(fractions))
    else:
        validation_start = validation_start or split_config.get("validation_start")
        test_start = test_start or split_config.get("test_start")
        split = (TimeSplit(validation_start, test_start) if validation_start and test_start
                 else TimeSplit(fractions=tuple(split_config.get("fractions", (0.7, 0.15, 0.15)))))
    train_config = tr.config_from_mapping(tr.TrainConfig, config.get("train"), overrides)
    evaluation_config = tr.config_from_mapping(ev.EvaluationConfig, config.get("evaluation"))
    gate_config = tr.config_from_mapping(ev.GateConfig, config.get("gate"), gate_overrides)

    lap = Laps(digits=2)

    info = build_snapshot_task(settings, view, TimeRange.of(start, end))
    lap("snapshot")
    splits = load_splits_task(settings, info, split)
    lap("splits")
    model = train_task(splits, train_config)
    lap("train")
    champion = load_champion_task(settings, view)
    evaluation, validation = evaluate_task(model, splits, evaluation_config, champion)
    gate = ev.check_gate(evaluation, gate_config)
    lap("evaluate")
    version = register_task(settings, view, model, evaluation, gate, splits, train_config, validation)
    alias = alias_task(settings, view, version.version, gate, promote)
    lap("register")
    logger.info("%s v%d: gate %s -> %s", view, version.version, gate.summary(), alias)

    worst = evaluation.worst_slice
    create_markdown_artifact(
        key=f"training-{view.replace('_', '-')}",
        markdown=ev.summary_markdown(view, version.version, evaluation, gate, alias, {
            "snapshot": f"{info.snapshot_id} ({info.row_count:,} rows, hash {info.content_hash[:12]})",
            "window": f"[{info.time_range.start:%Y-%m-%d}, {info.time_range.end:%Y-%m-%d}) on {info.spine_time}",
            "split": f"validation from {splits.validation_start:%Y-%m-%d}, test from {splits.test_start:%Y-%m-%d}; "
                     f"rows {splits.as_dict()['rows']}",
            "trees": model.best_iteration,
            "files": str(version.model_dir),
            "seconds": lap.seconds,
        }),
        description=f"{view} v{version.version}: gate {'passed' if gate.passed else 'failed'}",
    )
    return {
        "model_name": view,
        "version": version.version,
        "alias": alias,
        "gate_passed": gate.passed,
        "gate": gate.summary(),
        "snapshot_id": info.snapshot_id,
        "snapshot_reused": info.reused,
        "rows": splits.as_dict()["rows"],
        "best_iteration": model.best_iteration,
        "metrics": evaluation.metrics.as_dict(),
        "champion_metrics": evaluation.champion.metrics.as_dict()
        if evaluation.champion and evaluation.champion.metrics else None,
        "champion_version": evaluation.champion.version if evaluation.champion else None,
        "worst_slice": worst.as_dict() if worst else None,
        "model_dir": str(version.model_dir),
        "seconds": lap.seconds,
    }


if __name__ == "__main__":
    training()
