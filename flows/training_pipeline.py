"""Prefect flow of the training pipeline: snapshot -> train -> evaluate -> register -> promote or not.

Thin wiring of models_ml.training.pipeline: each task wraps one of its steps and adds a log line, and the
pipeline's one composition (:func:`~models_ml.training.pipeline.run_training`) calls them in order. The
candidate is always registered; it becomes `champion` only when it passes the gate, otherwise
`challenger` (also when the registry refuses the promotion, which the flow logs as a warning, e.g.
view v2's groups not yet materialized online). A markdown artifact summarises metrics, worst slice and the
gate. Only steps that touch files or the warehouse retry, on I/O errors only (flows/retry.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.retry import CPU_TASK_OPTIONS, io_task_options
from models_ml.core.settings import Settings, load_settings
from models_ml.core.time import TimeRange
from models_ml.training import evaluate as ev
from models_ml.training import pipeline as tp
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import train as tr
from models_ml.training.splits import Splits, TimeSplit

IO = io_task_options()


@task(name="build-snapshot", **IO)
def build_snapshot_task(settings: Settings, view: str, time_range: TimeRange,
                        view_version: int | None = None) -> sn.SnapshotInfo:
    info = tp.build_snapshot(settings, view, time_range, view_version)
    get_run_logger().info("snapshot %s of %s v%d: %s rows, hash %s%s", info.snapshot_id, info.feature_view,
                          info.feature_view_version, f"{info.row_count:,}", info.content_hash[:12],
                          " (reused)" if info.reused else "")
    return info


@task(name="load-splits", **IO)
def load_splits_task(settings: Settings, info: sn.SnapshotInfo, split: TimeSplit) -> Splits:
    splits = tp.load_splits(settings, info, split)
    get_run_logger().info("splits: %s", splits.as_dict())
    return splits


@task(name="train", **CPU_TASK_OPTIONS)
def train_task(splits: Splits, config: tr.TrainConfig) -> tr.Model:
    model = tp.train(splits, config)
    get_run_logger().info("trained %d trees in %.1f s; at best iteration %s", model.best_iteration,
                          model.training_seconds or 0, model.best_scores())
    return model


@task(name="load-champion", **IO)
def load_champion_task(settings: Settings, model_name: str) -> tuple[int, tr.Model] | None:
    return tp.load_champion(settings, model_name)


@task(name="evaluate", **CPU_TASK_OPTIONS)
def evaluate_task(model: tr.Model, splits: Splits, config: ev.EvaluationConfig,
                  champion: tuple[int, tr.Model] | None) -> tuple[ev.Evaluation, ev.Metrics]:
    evaluation, validation = tp.evaluate(model, splits, config, champion)
    m = evaluation.metrics
    shown = {name: "undefined" if value is None else f"{value:.4f}"  # AUCs are undefined on one class
             for name, value in (("roc_auc", m.roc_auc), ("pr_auc", m.pr_auc), ("log_loss", m.log_loss),
                                 ("brier", m.brier), ("ece", m.ece))}
    get_run_logger().info("test: %s", ", ".join(f"{k} {v}" for k, v in shown.items()))
    return evaluation, validation


@task(name="register", **IO)
def register_task(settings: Settings, model_name: str, model: tr.Model, evaluation: ev.Evaluation,
                  gate: ev.GateResult, splits: Splits, config: tr.TrainConfig,
                  validation: ev.Metrics) -> registry.ModelVersion:
    version = tp.register(settings, model_name, model, evaluation, gate, splits, config, validation)
    get_run_logger().info("registered %s v%d in %s", model_name, version.version, version.model_dir)
    return version


@task(name="set-alias", **IO)
def alias_task(settings: Settings, model_name: str, version: int, gate: ev.GateResult,
               promote: bool) -> tp.AliasDecision:
    decision = tp.set_alias(settings, model_name, version, gate, promote)
    if decision.refused:
        get_run_logger().warning("%s v%d passed its gate but stays challenger: %s", model_name, version,
                                 decision.refused)
    return decision


STEPS = tp.TrainingSteps(build_snapshot=build_snapshot_task, load_splits=load_splits_task, train=train_task,
                         load_champion=load_champion_task, evaluate=evaluate_task, register=register_task,
                         set_alias=alias_task)


@flow(name="training")
def training(
    view: str | None = None,
    start: str | None = None,
    end: str | None = None,
    validation_start: str | None = None,
    test_start: str | None = None,
    fractions: Sequence[float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    gate_overrides: Mapping[str, Any] | None = None,
    promote: bool = True,
    home: str | None = None,
    view_version: int | None = None,
) -> dict[str, Any]:
    """Train a new version of the model behind feature view `view` (default: the only view) and decide its
    alias, on version ``view_version`` of the view (default: its current version).

    The time range ``[start, end)`` and the cut dates (ISO dates, UTC, on the spine time) default to the
    view's training config; ``fractions`` (train, validation, test) replace the cut dates; ``overrides`` and
    ``gate_overrides`` replace hyperparameters and gate thresholds.
    """
    settings = load_settings(home)
    plan = tp.plan_training(settings, view, start=start, end=end, validation_start=validation_start,
                            test_start=test_start, fractions=fractions, overrides=overrides,
                            gate_overrides=gate_overrides, view_version=view_version)
    run = tp.run_training(settings, plan, promote=promote, steps=STEPS)
    view = plan.view
    get_run_logger().info("%s v%d (view v%d): gate %s -> %s", view, run.version.version,
                          run.snapshot.feature_view_version, run.gate.summary(), run.alias)
    create_markdown_artifact(
        key=f"training-{view.replace('_', '-')}",
        markdown=run.as_markdown(),
        description=f"{view} v{run.version.version}: gate {'passed' if run.gate.passed else 'failed'}",
    )
    return run.as_dict()


if __name__ == "__main__":
    training()
