"""The training pipeline, composed once: snapshot -> splits -> train -> evaluate -> register -> alias.

:func:`plan_training` resolves a run's settings (time range, split, hyperparameters, evaluation and gate)
from the model's config and the caller's overrides; :func:`run_training` calls the steps in order. Each
step that touches the warehouse or model files opens what it needs and closes it, so the Prefect flow
(flows/training_pipeline.py) can pass its tasks, which wrap these same functions, retry them on I/O alone
and add only logging and the run's artifact.

The candidate is always registered; it becomes ``champion`` only when it passes the gate (thresholds from
the config, and not worse than the current champion on the same test rows) and promotion was asked for,
otherwise ``challenger``. Promoting republishes the champion pointer (the registry's rule). A promotion
the registry refuses (say the groups of view v2 are not yet materialized online) leaves the candidate
challenger, with the refusal as the reason, rather than failing a run that has already registered it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models_ml.core.home_lock import hold_home
from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.core.timing import Laps
from models_ml.definitions.catalog import load_catalog
from models_ml.offline.store import opened, opened_with_state
from models_ml.training import evaluate as ev
from models_ml.training import registry
from models_ml.training import snapshot as sn
from models_ml.training import splits as sp
from models_ml.training import train as tr

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


# --------------------------------------------------------------------------------------------------
# What to run


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a training run needs to know before it reads any data."""

    view: str
    time_range: TimeRange
    split: sp.TimeSplit
    train: tr.TrainConfig
    evaluation: ev.EvaluationConfig
    gate: ev.GateConfig
    view_version: int | None = None  # None: the view's current version


def plan_training(
    settings: Settings,
    view: str | None = None,
    *,
    start: str | None = None,
    end: str | None = None,
    validation_start: str | None = None,
    test_start: str | None = None,
    fractions: Sequence[float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    gate_overrides: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    view_version: int | None = None,
) -> TrainingPlan:
    """The run of the model behind ``view`` (default: the only view of the project; an unknown name is a
    CatalogError listing the views): each argument given wins over its ``config`` entry (default: the
    training config that version ``view_version`` of the view, default its current one, declares in the dbt
    project of ``settings``; an unknown version is a CatalogError listing the versions).

    The time range ``[start, end)`` and the cut dates (ISO dates, UTC, on the spine time) come from its
    ``[split]``; ``fractions`` (train, validation, test) replace the cut dates; ``overrides`` and
    ``gate_overrides`` replace hyperparameters and gate thresholds.
    """
    if config is None or view is None:  # a given config and view name need no dbt project
        catalog = load_catalog(settings)
        feature_view = catalog.view(view, view_version)
        view = feature_view.name
        config = feature_view.training.as_dict() if config is None else config
    split_config = config.get("split", {})
    start, end = start or split_config.get("start"), end or split_config.get("end")
    if not (start and end):
        raise ValueError(f"no time range for {view}: pass start and end, or set meta.fti.training.split in the view's YAML")
    if fractions:
        split = sp.TimeSplit(fractions=tuple(fractions))
    else:
        validation_start = validation_start or split_config.get("validation_start")
        test_start = test_start or split_config.get("test_start")
        split = (sp.TimeSplit(validation_start, test_start) if validation_start and test_start
                 else sp.TimeSplit(fractions=tuple(split_config.get("fractions", DEFAULT_FRACTIONS))))
    return TrainingPlan(
        view=view,
        time_range=TimeRange.of(start, end),
        split=split,
        train=tr.config_from_mapping(tr.TrainConfig, config.get("train"), overrides),
        evaluation=tr.config_from_mapping(ev.EvaluationConfig, config.get("evaluation")),
        gate=tr.config_from_mapping(ev.GateConfig, config.get("gate"), gate_overrides),
        view_version=view_version,
    )


# --------------------------------------------------------------------------------------------------
# The steps


def build_snapshot(settings: Settings, view: str, time_range: TimeRange,
                   view_version: int | None = None) -> sn.SnapshotInfo:
    """The snapshot of ``time_range`` of version ``view_version`` of the view (default its current one; the
    stored snapshot when the definition and data are unchanged): its rows on the engine, its registry row
    in the stateful layer."""
    feature_view = load_catalog(settings).view(view, view_version)
    with opened_with_state(settings) as (store, state):
        return sn.build_snapshot(store, feature_view, time_range, state=state)


def load_splits(settings: Settings, info: sn.SnapshotInfo, split: sp.TimeSplit) -> sp.Splits:
    with opened(settings) as store:
        return sp.load_splits(store, info, split)


def train(splits: sp.Splits, config: tr.TrainConfig) -> tr.Model:
    info = splits.snapshot
    return tr.train_model(
        splits.train, splits.validation, features=info.feature_columns, target=info.target, config=config,
        feature_view=info.feature_view, feature_view_version=info.feature_view_version,
    )


def load_champion(settings: Settings, model_name: str) -> tuple[int, tr.Model] | None:
    """The current champion's version number and model, to compare the candidate with (None: no champion)."""
    if registry.CHAMPION not in registry.get_aliases(settings, model_name):
        return None
    version, model = registry.load(settings, model_name, registry.CHAMPION)
    return version.version, model


def evaluate(model: tr.Model, splits: sp.Splits, config: ev.EvaluationConfig,
             champion: tuple[int, tr.Model] | None) -> tuple[ev.Evaluation, ev.Metrics]:
    """The candidate on the test split (per slice, beside the champion) and its validation metrics."""
    validation = ev.compute_metrics(tr.target_array(splits.validation, model.spec.target),
                                    model.predict(splits.validation), config.calibration_bins)
    evaluation = ev.evaluate_model(
        model, splits.test, splits.snapshot.slices, config,
        champion=champion[1] if champion else None, champion_version=champion[0] if champion else None,
    )
    return evaluation, validation


def register(settings: Settings, model_name: str, model: tr.Model, evaluation: ev.Evaluation,
             gate: ev.GateResult, splits: sp.Splits, config: tr.TrainConfig,
             validation: ev.Metrics) -> registry.ModelVersion:
    """A new version of ``model_name`` with its lineage (snapshot, split, code) and plots."""
    info = splits.snapshot
    lineage = registry.Lineage(
        feature_view=info.feature_view, feature_view_version=info.feature_view_version,
        feature_group_versions=info.feature_group_versions, snapshot_id=info.snapshot_id,
        snapshot_hash=info.content_hash,
        split={**splits.as_dict(), "start": info.time_range.start.isoformat(), "end": info.time_range.end.isoformat()},
    )
    return registry.register_model(
        settings, model_name, model, evaluation, gate, lineage,
        train_config=config.as_dict(),
        validation_metrics=validation.as_dict(),
        write_artifacts=lambda directory, number: ev.save_plots(evaluation, directory, model_name, number),
    )


@dataclass(frozen=True)
class AliasDecision:
    """The alias a new version got; ``refused`` is why the registry would not make it champion, if it would not."""

    alias: str
    refused: str | None = None


def set_alias(settings: Settings, model_name: str, version: int, gate: ev.GateResult,
              promote: bool) -> AliasDecision:
    """``champion`` when the gate passed, promotion was asked for and the registry allows it (the version's
    feature groups built and, with an online store, materialized); else ``challenger``, with the refusal as
    its reason when the registry refused: the version is registered already, so the run does not fail."""
    if gate.passed and promote:
        try:
            registry.promote(settings, model_name, version, registry.CHAMPION, reason="gate passed",
                             catalog=load_catalog(settings))
            return AliasDecision(registry.CHAMPION)
        except registry.RegistryError as error:
            registry.set_alias(settings, model_name, registry.CHALLENGER, version,
                               reason=f"gate passed; promotion refused: {error}")
            registry.publish_challenger(settings, model_name, catalog=load_catalog(settings))
            return AliasDecision(registry.CHALLENGER, refused=str(error))
    registry.set_alias(settings, model_name, registry.CHALLENGER, version, reason=gate.summary())
    registry.publish_challenger(settings, model_name, catalog=load_catalog(settings))
    return AliasDecision(registry.CHALLENGER)


# --------------------------------------------------------------------------------------------------
# The composition


@dataclass(frozen=True)
class TrainingSteps:
    """The steps :func:`run_training` calls; a flow passes its tasks, which wrap these same functions."""

    build_snapshot: Callable[[Settings, str, TimeRange, int | None], sn.SnapshotInfo] = build_snapshot
    load_splits: Callable[[Settings, sn.SnapshotInfo, sp.TimeSplit], sp.Splits] = load_splits
    train: Callable[[sp.Splits, tr.TrainConfig], tr.Model] = train
    load_champion: Callable[[Settings, str], tuple[int, tr.Model] | None] = load_champion
    evaluate: Callable[..., tuple[ev.Evaluation, ev.Metrics]] = evaluate
    register: Callable[..., registry.ModelVersion] = register
    set_alias: Callable[[Settings, str, int, ev.GateResult, bool], AliasDecision] = set_alias


@dataclass(frozen=True)
class TrainingRun:
    """What a training run did: the snapshot, splits, model, evaluation, gate, version and alias."""

    plan: TrainingPlan
    snapshot: sn.SnapshotInfo
    splits: sp.Splits
    model: tr.Model
    evaluation: ev.Evaluation
    gate: ev.GateResult
    version: registry.ModelVersion
    alias: str
    seconds: dict[str, float]
    promotion_refused: str | None = None  # why the registry would not make a version that passed champion

    def as_dict(self) -> dict[str, Any]:
        evaluation, champion = self.evaluation, self.evaluation.champion
        worst = evaluation.worst_slice
        return {
            "model_name": self.plan.view,
            "version": self.version.version,
            "alias": self.alias,
            "promotion_refused": self.promotion_refused,
            "feature_view_version": self.snapshot.feature_view_version,
            "feature_group_versions": dict(self.snapshot.feature_group_versions),
            "gate_passed": self.gate.passed,
            "gate": self.gate.summary(),
            "snapshot_id": self.snapshot.snapshot_id,
            "snapshot_reused": self.snapshot.reused,
            "rows": self.splits.as_dict()["rows"],
            "best_iteration": self.model.best_iteration,
            "metrics": evaluation.metrics.as_dict(),
            "champion_metrics": champion.metrics.as_dict() if champion and champion.metrics else None,
            "champion_version": champion.version if champion else None,
            "worst_slice": worst.as_dict() if worst else None,
            "model_dir": str(self.version.model_dir),
            "seconds": self.seconds,
        }

    def as_markdown(self) -> str:
        info, splits = self.snapshot, self.splits
        refused = {"promotion refused": self.promotion_refused} if self.promotion_refused else {}
        return ev.summary_markdown(self.plan.view, self.version.version, self.evaluation, self.gate, self.alias, {
            **refused,
            "feature view": f"{info.feature_view} v{info.feature_view_version}",
            "snapshot": f"{info.snapshot_id} ({info.row_count:,} rows, hash {info.content_hash[:12]})",
            "window": f"[{info.time_range.start:%Y-%m-%d}, {info.time_range.end:%Y-%m-%d}) on {info.spine_time}",
            "split": f"validation from {splits.validation_start:%Y-%m-%d}, test from {splits.test_start:%Y-%m-%d}; "
                     f"rows {splits.as_dict()['rows']}",
            "trees": self.model.best_iteration,
            "files": str(self.version.model_dir),
            "seconds": self.seconds,
        })


def run_training(settings: Settings, plan: TrainingPlan, *, promote: bool = True,
                 steps: TrainingSteps = TrainingSteps()) -> TrainingRun:
    """Train, evaluate and register a new version of the model behind ``plan.view`` and decide its alias,
    holding the home (models_ml.core.home_lock) so the snapshot never reads a half-built warehouse."""
    with hold_home(settings, "training"):
        return _run_training(settings, plan, promote, steps)


def _run_training(settings: Settings, plan: TrainingPlan, promote: bool, steps: TrainingSteps) -> TrainingRun:
    lap = Laps(digits=2)
    info = steps.build_snapshot(settings, plan.view, plan.time_range, plan.view_version)
    lap("snapshot")
    splits = steps.load_splits(settings, info, plan.split)
    lap("splits")
    model = steps.train(splits, plan.train)
    lap("train")
    champion = steps.load_champion(settings, plan.view)
    evaluation, validation = steps.evaluate(model, splits, plan.evaluation, champion)
    gate = ev.check_gate(evaluation, plan.gate)
    lap("evaluate")
    version = steps.register(settings, plan.view, model, evaluation, gate, splits, plan.train, validation)
    decision = steps.set_alias(settings, plan.view, version.version, gate, promote)
    lap("register")
    return TrainingRun(plan, info, splits, model, evaluation, gate, version, decision.alias, lap.seconds,
                       decision.refused)
