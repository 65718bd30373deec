"""The model registry: SQL tables in the warehouse (schema `registry`) plus model files under FTI_HOME.

Tables (all queryable with plain SQL):

* ``registry.model_versions``: one row per (model_name, version): where its files are, its parameters,
  lineage (feature view and version, feature group versions, snapshot id and hash, split, code version)
  and the gate result at registration;
* ``registry.model_metrics``: (model_name, version, dataset, metric, value), e.g. dataset ``test``,
  ``validation``, ``champion_on_test`` (the then-champion on the same rows);
* ``registry.model_slice_metrics``: (model_name, version, dataset, slice_column, slice_value, metric, value);
* ``registry.model_aliases``: the current version behind each alias (``champion``, ``challenger``);
* ``registry.alias_history``: every alias change in order (promote, rollback, set, remove): who
  (``changed_by``, user@host), when, why (``reason``), from (``previous_version``) and to (``version``);
* ``registry.group_versions_in_use``: the feature group versions the aliased models need (see "Features
  move with the model" below), rewritten in the transaction of every alias change, so SQL outside Python
  (the dbt project's check before it builds a feature group) sees what may not disappear.

Files: ``FTI_HOME/models/<name>/<version>/`` holds ``model.txt``, ``model_spec.json`` (features and
encodings), ``evaluation.json`` and the plots. Registering is atomic: the files are written to a staging
directory, the rows inserted in one transaction, and the directory renamed to the version before commit;
on any failure both are undone. ``model_dir`` is stored relative to ``FTI_HOME`` (see
:mod:`models_ml.core.home_paths`), so a copied or moved home finds its own files.

The champion pointer (:mod:`.champion_pointer`, the file the online service follows) is derived from the
committed aliases: a promotion or rollback stages the new pointer, commits the registry, then installs the
pointer. :func:`reconcile_pointers` compares every pointer with the registry and rewrites the ones that
disagree; promotions, rollbacks and publications run it first, the service runs it at start for promotions
that were interrupted, and ``fti doctor`` runs it on request. Every write holds the home's lock
(:func:`models_ml.core.home_lock.hold_home`).

Every read and write goes through the offline store (portable SQL with ``?`` parameters); several
statements that must commit together run in one :meth:`~models_ml.offline.store.OfflineStore.transaction`.

**Features move with the model.** A model version names the view version and the group versions it was
trained on (its lineage), and whoever scores it pins its view to them
(:func:`models_ml.definitions.pinning.pin_view`): batch inference reads those group tables, the champion
pointer carries that view to the service, which looks up those group versions. So promoting a model trained
on v2 of a group and rolling it back move model and features together. A version is *in use* while it is
the champion, the challenger, or the champion a rollback would return to (:func:`group_versions_in_use`);
online materialization keeps refreshing exactly the group versions in use (and each group's latest), and a
dbt build that would drop one is refused before it builds. A promotion or rollback to champion is refused,
with nothing changed, when the version's groups are not declared, not built, or (with an online store)
not materialized (:func:`check_servable`).

Rollback replays the champion's alias history as a stack (a promotion pushes, a rollback pops) and moves
the champion to the version below the top, so repeated rollbacks walk back through earlier champions
instead of toggling between the last two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import models_ml
from models_ml.core.home_lock import HomeBusy, hold_home
from models_ml.core.home_paths import from_stored, to_stored
from models_ml.core.settings import PROJECT_ROOT, Settings
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.offline.external import ExternalGroupError, mount_all
from models_ml.definitions.pinning import LineageError, pin_view
from models_ml.offline.store import OfflineStore, opened, opened_state
from models_ml.training import champion_pointer

if TYPE_CHECKING:  # train and evaluate load LightGBM, pandas and scipy: only registering and loading need them
    from models_ml.training.evaluate import Evaluation, GateResult
    from models_ml.training.train import Model

SCHEMA = "registry"
CHAMPION, CHALLENGER = "champion", "challenger"
_UTC = dt.timezone.utc

_DDL = [
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {SCHEMA}.model_versions (
        model_name varchar not null,
        version integer not null,
        created_at timestamptz not null,
        model_dir varchar not null,
        feature_view varchar not null,
        feature_view_version integer not null,
        feature_group_versions json not null,
        snapshot_id varchar not null,
        snapshot_hash varchar,
        split json,
        code_version varchar not null,
        params json not null,
        train_config json,
        features json not null,
        best_iteration integer,
        training_seconds double,
        gate_passed boolean,
        gate json,
        description varchar,
        primary key (model_name, version)
    )""",
    f"""create table if not exists {SCHEMA}.model_metrics (
        model_name varchar not null,
        version integer not null,
        dataset varchar not null,
        metric varchar not null,
        value double,
        primary key (model_name, version, dataset, metric)
    )""",
    f"""create table if not exists {SCHEMA}.model_slice_metrics (
        model_name varchar not null,
        version integer not null,
        dataset varchar not null,
        slice_column varchar not null,
        slice_value varchar not null,
        metric varchar not null,
        value double,
        primary key (model_name, version, dataset, slice_column, slice_value, metric)
    )""",
    f"""create table if not exists {SCHEMA}.model_aliases (
        model_name varchar not null,
        alias varchar not null,
        version integer not null,
        updated_at timestamptz not null,
        primary key (model_name, alias)
    )""",
    f"create sequence if not exists {SCHEMA}.alias_history_seq",
    f"""create table if not exists {SCHEMA}.alias_history (
        event_id bigint primary key default nextval('{SCHEMA}.alias_history_seq'),
        model_name varchar not null,
        alias varchar not null,
        version integer,
        previous_version integer,
        action varchar not null,
        reason varchar,
        changed_at timestamptz not null
    )""",
    f"alter table {SCHEMA}.alias_history add column if not exists changed_by varchar",
    f"""create table if not exists {SCHEMA}.group_versions_in_use (
        model_name varchar not null,
        version integer not null,
        role varchar not null,
        feature_group varchar not null,
        group_version integer,
        updated_at timestamptz not null
    )""",
]
ROLLBACK_TARGET = "rollback"  # the role of the champion a rollback would return to

_METRICS = ("rows", "positives", "positive_rate", "mean_score", "roc_auc", "pr_auc", "log_loss", "brier", "ece")


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown model, version or alias; nothing to roll back)."""


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: enough to rebuild its snapshot and re-train it bit for bit."""

    feature_view: str
    feature_view_version: int
    feature_group_versions: Mapping[str, int | None]
    snapshot_id: str
    snapshot_hash: str | None = None
    split: Mapping[str, Any] = field(default_factory=dict)
    code_version: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: int
    created_at: dt.datetime
    model_dir: Path
    feature_view: str
    feature_view_version: int
    feature_group_versions: dict[str, int | None]
    snapshot_id: str
    snapshot_hash: str | None
    split: dict[str, Any]
    code_version: str
    params: dict[str, Any]
    train_config: dict[str, Any]
    features: list[str]
    best_iteration: int | None
    training_seconds: float | None
    gate_passed: bool | None
    gate: dict[str, Any]
    description: str | None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class AliasChange:
    """What a promotion, rollback or alias change did; ``changed`` is False when the version already held
    the alias (nothing was written: no history row, no pointer)."""

    model_name: str
    alias: str
    version: int | None
    previous_version: int | None
    action: str
    changed: bool = True


# --------------------------------------------------------------------------------------------------
# Plumbing


@contextlib.contextmanager
def _registry(settings: Settings) -> Iterator[OfflineStore]:
    """The warehouse with the registry tables present, closed on exit (a registry from before the
    versions-in-use table gets it filled from its aliases when it is created; every alias change keeps it
    current from then on). The registry is state: it lives where the stateful layer does."""
    with opened_state(settings) as store:
        created_in_use = not store.exists(SCHEMA, "group_versions_in_use")
        for statement in _DDL:
            store.execute(statement)
        if created_in_use:
            now = dt.datetime.now(_UTC)
            for (name,) in store.execute(f"select distinct model_name from {SCHEMA}.model_aliases"):
                _record_in_use(store, name, now)
        yield store


def model_dir(settings: Settings, model_name: str, version: int) -> Path:
    return settings.models_dir / model_name / str(version)


def code_version() -> str:
    """The git commit of the checkout (``+dirty`` with uncommitted changes), else the package version."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return f"{commit}+dirty" if status else commit
    except (OSError, subprocess.SubprocessError):
        return f"fti {models_ml.__version__}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _versions(numbers: Iterable[int], none: str = "none") -> str:
    """``[1, 2]`` -> "v1, v2", as the messages read."""
    return ", ".join(f"v{n}" for n in numbers) or none


def _aliases_text(aliases: Mapping[str, int]) -> str:
    """``{"champion": 1}`` -> "champion → v1"."""
    return ", ".join(f"{alias} → v{version}" for alias, version in sorted(aliases.items())) or "none"


# --------------------------------------------------------------------------------------------------
# Registering


def register_model(
    settings: Settings,
    model_name: str,
    model: Model,
    evaluation: Evaluation,
    gate: GateResult,
    lineage: Lineage,
    *,
    train_config: Mapping[str, Any] | None = None,
    validation_metrics: Mapping[str, float] | None = None,
    description: str | None = None,
    write_artifacts: Callable[[Path, int], Mapping[str, Path]] | None = None,
) -> ModelVersion:
    """Record a new version of ``model_name`` (always, gate passed or not) and write its files.

    ``write_artifacts(directory, version)`` may add files (plots) once the version number is known; they
    are written into the staging directory and so share the registration's all-or-nothing fate.
    """
    with hold_home(settings, f"register {model_name}"):
        return _register(settings, model_name, model, evaluation, gate, lineage, train_config=train_config,
                         validation_metrics=validation_metrics, description=description,
                         write_artifacts=write_artifacts)


STAGING_PREFIX = ".staging-"


def _remove_abandoned_staging(settings: Settings, model_name: str) -> None:
    """Remove the staging folders of registrations that were killed; registering holds the home's lock, so
    none of them belongs to a live registration."""
    for folder in (settings.models_dir / model_name).glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _register(settings: Settings, model_name: str, model: Model, evaluation: Evaluation, gate: GateResult,
              lineage: Lineage, *, train_config: Mapping[str, Any] | None,
              validation_metrics: Mapping[str, float] | None, description: str | None,
              write_artifacts: Callable[[Path, int], Mapping[str, Path]] | None) -> ModelVersion:
    from models_ml.training.train import save_model

    _remove_abandoned_staging(settings, model_name)
    staging = settings.models_dir / model_name / f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    final: Path | None = None
    version: int | None = None
    try:
        save_model(model, staging)
        (staging / "evaluation.json").write_text(_json({"evaluation": evaluation.as_dict(), "gate": gate.as_dict()}))
        with _registry(settings) as store, store.transaction():
            version = int(store.scalar(
                f"select coalesce(max(version), 0) + 1 from {SCHEMA}.model_versions where model_name = ?",
                [model_name],
            ))
            if write_artifacts is not None:
                write_artifacts(staging, version)
            final = model_dir(settings, model_name, version)
            now = dt.datetime.now(_UTC)
            store.execute(
                f"insert into {SCHEMA}.model_versions values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    model_name, version, now, to_stored(settings.home, final), lineage.feature_view,
                    lineage.feature_view_version,
                    _json(dict(lineage.feature_group_versions)), lineage.snapshot_id, lineage.snapshot_hash,
                    _json(dict(lineage.split)), lineage.code_version or code_version(), _json(model.params),
                    _json(dict(train_config or {})), _json(model.spec.features), model.best_iteration,
                    model.training_seconds, gate.passed, _json(gate.as_dict()), description,
                ],
            )
            metric_rows = [
                (model_name, version, evaluation.dataset, name, evaluation.metrics.get(name)) for name in _METRICS
            ]
            if evaluation.champion is not None and evaluation.champion.metrics is not None:
                metric_rows += [
                    (model_name, version, f"champion_on_{evaluation.dataset}", name,
                     evaluation.champion.metrics.get(name)) for name in _METRICS
                ]
            metric_rows += [(model_name, version, "validation", k, v) for k, v in (validation_metrics or {}).items()]
            store.executemany(f"insert into {SCHEMA}.model_metrics values (?, ?, ?, ?, ?)", metric_rows)
            slice_rows = [
                (model_name, version, evaluation.dataset, s.column, s.value, name, s.metrics.get(name))
                for s in evaluation.slices for name in _METRICS
            ]
            if slice_rows:
                store.executemany(f"insert into {SCHEMA}.model_slice_metrics values (?, ?, ?, ?, ?, ?, ?)",
                                  slice_rows)
            if final.exists():  # left over from a registration whose transaction never committed
                shutil.rmtree(final)
            staging.rename(final)
        return get_version(settings, model_name, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if final is not None and final.exists() and not _version_exists(settings, model_name, version):
            shutil.rmtree(final, ignore_errors=True)
        raise


def _version_exists(settings: Settings, model_name: str, version: int | None) -> bool:
    try:
        with _registry(settings) as store:
            return bool(store.scalar(
                f"select count(*) from {SCHEMA}.model_versions where model_name = ? and version = ?",
                [model_name, version],
            ))
    except Exception:  # noqa: BLE001 - when unsure, keep the files
        return True


# --------------------------------------------------------------------------------------------------
# Reading


def _version_from_row(row: Mapping[str, Any], aliases: tuple[str, ...], home: Path) -> ModelVersion:
    return ModelVersion(
        model_name=row["model_name"],
        version=int(row["version"]),
        created_at=row["created_at"].astimezone(_UTC),
        model_dir=from_stored(home, row["model_dir"]),
        feature_view=row["feature_view"],
        feature_view_version=int(row["feature_view_version"]),
        feature_group_versions=json.loads(row["feature_group_versions"]),
        snapshot_id=row["snapshot_id"],
        snapshot_hash=row["snapshot_hash"],
        split=json.loads(row["split"] or "{}"),
        code_version=row["code_version"],
        params=json.loads(row["params"]),
        train_config=json.loads(row["train_config"] or "{}"),
        features=json.loads(row["features"]),
        best_iteration=row["best_iteration"],
        training_seconds=row["training_seconds"],
        gate_passed=row["gate_passed"],
        gate=json.loads(row["gate"] or "{}"),
        description=row["description"],
        aliases=aliases,
    )


def _aliases(store: OfflineStore, model_name: str | None = None) -> dict[tuple[str, int], list[str]]:
    where, params = ("where model_name = ?", [model_name]) if model_name else ("", [])
    found: dict[tuple[str, int], list[str]] = {}
    for row in store.query(f"select * from {SCHEMA}.model_aliases {where} order by alias", params):
        found.setdefault((row["model_name"], int(row["version"])), []).append(row["alias"])
    return found


def list_versions(settings: Settings, model_name: str | None = None) -> list[ModelVersion]:
    """Every registered version (of one model, or of all), oldest first, with their current aliases."""
    where, params = ("where model_name = ?", [model_name]) if model_name else ("", [])
    with _registry(settings) as store:
        rows = store.query(f"select * from {SCHEMA}.model_versions {where} order by model_name, version", params)
        aliases = _aliases(store, model_name)
    return [_version_from_row(r, tuple(aliases.get((r["model_name"], int(r["version"])), ())), settings.home)
            for r in rows]


def list_models(settings: Settings) -> list[str]:
    with _registry(settings) as store:
        return [r[0] for r in store.execute(f"select distinct model_name from {SCHEMA}.model_versions order by 1")]


def model_name(settings: Settings, name: str | None = None) -> str:
    """``name`` if given; else the only registered model (a RegistryError names them when there are more)."""
    if name is not None:
        return name
    names = list_models(settings)
    if len(names) != 1:
        raise RegistryError(f"which model? the registry has {len(names)} ({', '.join(names) or 'none'}): "
                            f"name one with --model")
    return names[0]


def get_version(settings: Settings, model_name: str, version: int | None = None) -> ModelVersion:
    """One version (the latest when ``version`` is None)."""
    versions = list_versions(settings, model_name)
    if not versions:
        raise RegistryError(f"no model {model_name!r} in the registry")
    if version is None:
        return versions[-1]
    for candidate in versions:
        if candidate.version == version:
            return candidate
    raise RegistryError(f"model {model_name!r} has no version {version} "
                        f"(versions: {_versions(v.version for v in versions)})")


def get_metrics(settings: Settings, model_name: str, version: int) -> dict[str, dict[str, float | None]]:
    """dataset -> metric -> value."""
    with _registry(settings) as store:
        rows = store.query(f"select dataset, metric, value from {SCHEMA}.model_metrics "
                           f"where model_name = ? and version = ? order by dataset, metric", [model_name, version])
    metrics: dict[str, dict[str, float | None]] = {}
    for row in rows:
        metrics.setdefault(row["dataset"], {})[row["metric"]] = row["value"]
    return metrics


def get_slice_metrics(settings: Settings, model_name: str, version: int, dataset: str = "test") -> list[dict[str, Any]]:
    """One dict per slice (column, value, and each metric), worst ROC-AUC first."""
    columns = ",\n".join(f"max(value) filter (where metric = '{name}') as {name}" for name in _METRICS)
    with _registry(settings) as store:
        rows = store.query(f"""
            select slice_column, slice_value, {columns}
            from {SCHEMA}.model_slice_metrics
            where model_name = ? and version = ? and dataset = ?
            group by slice_column, slice_value
            order by roc_auc nulls last, slice_column, slice_value""", [model_name, version, dataset])
    return rows


def get_aliases(settings: Settings, model_name: str) -> dict[str, int]:
    with _registry(settings) as store:
        rows = store.query(f"select alias, version from {SCHEMA}.model_aliases where model_name = ?", [model_name])
    return {r["alias"]: int(r["version"]) for r in rows}


def alias_history(settings: Settings, model_name: str, alias: str | None = None) -> list[dict[str, Any]]:
    where, params = "where model_name = ?", [model_name]
    if alias:
        where, params = where + " and alias = ?", params + [alias]
    with _registry(settings) as store:
        return store.query(f"select * from {SCHEMA}.alias_history {where} order by event_id", params)


def resolve(settings: Settings, model_name: str, ref: str | int = CHAMPION) -> ModelVersion:
    """A version from an alias (``champion``), a version number, ``latest`` or ``"3"``/``"v3"``."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("v").isdigit()):
        return get_version(settings, model_name, int(str(ref).lstrip("v")))
    if ref == "latest":
        return get_version(settings, model_name)
    aliases = get_aliases(settings, model_name)
    if ref not in aliases:
        raise RegistryError(f"model {model_name!r} has no {ref!r} alias (aliases: {_aliases_text(aliases)})")
    return get_version(settings, model_name, aliases[ref])


def load(settings: Settings, model_name: str, ref: str | int = CHAMPION) -> tuple[ModelVersion, Model]:
    """Resolve ``ref`` and load that version's model with its input contract."""
    from models_ml.training.train import load_model

    version = resolve(settings, model_name, ref)
    return version, load_model(version.model_dir)


# --------------------------------------------------------------------------------------------------
# Aliases


def _alias_version(store: OfflineStore, model_name: str, alias: str) -> int | None:
    current = store.scalar(f"select version from {SCHEMA}.model_aliases where model_name = ? and alias = ?",
                           [model_name, alias])
    return None if current is None else int(current)


def changed_by() -> str:
    """Who moves an alias, as the history records it: the operating-system user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for the uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _set_alias(store: OfflineStore, model_name: str, alias: str, version: int | None,
               action: str, reason: str) -> AliasChange:
    previous = _alias_version(store, model_name, alias)
    now = dt.datetime.now(_UTC)
    store.execute(f"delete from {SCHEMA}.model_aliases where model_name = ? and alias = ?", [model_name, alias])
    if version is not None:
        store.execute(f"insert into {SCHEMA}.model_aliases values (?, ?, ?, ?)", [model_name, alias, version, now])
    store.execute(
        f"insert into {SCHEMA}.alias_history (model_name, alias, version, previous_version, action, reason, "
        f"changed_at, changed_by) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [model_name, alias, version, previous, action, reason, now, changed_by()],
    )
    _record_in_use(store, model_name, now)
    return AliasChange(model_name, alias, version, previous, action)


def _require_version(store: OfflineStore, model_name: str, version: int) -> None:
    found = store.scalar(f"select count(*) from {SCHEMA}.model_versions where model_name = ? and version = ?",
                         [model_name, version])
    if not found:
        raise RegistryError(f"model {model_name!r} has no version {version}")


# --------------------------------------------------------------------------------------------------
# Feature versions in use, and what a champion needs


@dataclass(frozen=True)
class InUse:
    """One feature group version that a model version in use needs; ``role`` is its alias (``champion``,
    ``challenger``) or ``rollback`` (the champion a rollback would return to)."""

    model_name: str
    version: int
    role: str
    feature_group: str
    group_version: int | None

    def describe(self) -> str:
        role = "the champion a rollback returns to" if self.role == ROLLBACK_TARGET else self.role
        return f"{self.model_name} v{self.version} ({role})"


def _roles(store: OfflineStore, model_name: str) -> dict[int, list[str]]:
    """Version -> why it is in use: its aliases, and ``rollback`` for the version below the champion's top."""
    roles: dict[int, list[str]] = {}
    for row in store.query(f"select alias, version from {SCHEMA}.model_aliases where model_name = ? order by alias",
                           [model_name]):
        roles.setdefault(int(row["version"]), []).append(row["alias"])
    stack = _alias_stack(store, model_name, CHAMPION)
    if len(stack) >= 2 and stack[-1] == _alias_version(store, model_name, CHAMPION):
        roles.setdefault(stack[-2], []).append(ROLLBACK_TARGET)
    return roles


def _in_use(store: OfflineStore, model_names: Sequence[str] | None = None) -> list[InUse]:
    if model_names is None:
        model_names = [r[0] for r in store.execute(f"select distinct model_name from {SCHEMA}.model_aliases order by 1")]
    found = []
    for name in model_names:
        for version, roles in sorted(_roles(store, name).items()):
            groups = json.loads(store.scalar(f"select feature_group_versions from {SCHEMA}.model_versions "
                                             f"where model_name = ? and version = ?", [name, version]) or "{}")
            found += [InUse(name, version, role, group, None if v is None else int(v))
                      for role in roles for group, v in sorted(groups.items())]
    return found


def _record_in_use(store: OfflineStore, model_name: str, now: dt.datetime) -> None:
    """Rewrite ``model_name``'s rows of ``registry.group_versions_in_use`` (inside the caller's transaction)."""
    store.execute(f"delete from {SCHEMA}.group_versions_in_use where model_name = ?", [model_name])
    rows = [(u.model_name, u.version, u.role, u.feature_group, u.group_version, now) for u in _in_use(store, [model_name])]
    if rows:
        store.executemany(f"insert into {SCHEMA}.group_versions_in_use values (?, ?, ?, ?, ?, ?)", rows)


def group_versions_in_use(settings: Settings) -> list[InUse]:
    """Every feature group version a model in use needs (champion, challenger, the champion a rollback
    returns to), read-only; empty when the home has no registry."""
    with _registry_read(settings) as store:
        if store is None or not store.exists(SCHEMA, "alias_history"):
            return []
        return _in_use(store)


def _not_online(settings: Settings, view: FeatureView) -> list[str]:
    """The view's online group versions (``name:vN``) that the home's online store does not hold; none when
    the home has no online store (nothing serves online, or it was never materialized).

    The one place training looks at the online store: the registry refuses a champion the service could not
    serve. The store module imports nothing of training, so there is no cycle."""
    from models_ml.inference.online.store import OnlineStoreError, group_id, open_online_store

    try:
        with open_online_store(settings, create=False) as online:
            held = online.freshness() if online.is_ready() else {}
    except OnlineStoreError:
        return []
    if not held:
        return []
    wanted = [group_id(ref.group.name, ref.group.version) for ref in view.features if ref.group.online]
    return [gid for gid in dict.fromkeys(wanted) if gid not in held]


def check_servable(settings: Settings, version: ModelVersion, catalog: Catalog, action: str = "promote") -> FeatureView:
    """The view ``version`` is served with, pinned to its trained-on versions; a RegistryError (one line,
    naming the group and the fix) when a group version is no longer declared, not built in the warehouse,
    or, with an online store, not materialized in it. Checked before a promotion or rollback writes anything."""
    who = f"cannot {action} {version.model_name} to v{version.version} as champion"
    try:
        view = pin_view(catalog, version)
    except LineageError as error:
        raise RegistryError(f"{who}: {error}") from error
    with opened(settings, read_only=True) as store:
        try:
            mount_all(store, [ref.group for ref in view.features])  # external groups: read where they live
        except ExternalGroupError as error:
            raise RegistryError(f"{who}: {error}") from error
        built = store.relations()
    for ref in view.features:
        group = ref.group
        if (group.schema, group.relation) not in built:
            raise RegistryError(f"{who}: its feature group {group.name} v{group.version} is not built (no table "
                                f"{group.qualified_relation}): run the feature pipeline (`fti features run`) first")
    missing = _not_online(settings, view)
    if missing:
        raise RegistryError(f"{who}: its feature group {missing[0]} is not materialized in the online store "
                            f"({settings.online_store}), so the service could not look it up: run "
                            f"`fti online materialize --group {missing[0]}` (or make it challenger and "
                            f"materialize) first")
    return view


# --------------------------------------------------------------------------------------------------
# Moving aliases


def set_alias(settings: Settings, model_name: str, alias: str, version: int, reason: str = "") -> AliasChange:
    """Point ``alias`` at ``version`` (e.g. ``challenger`` for a candidate that failed the gate)."""
    if alias == CHAMPION:
        raise RegistryError(f"the champion of {model_name!r} moves only by promotion or rollback "
                            f"(`fti models promote {model_name} {version}`), which also publishes its pointer")
    with hold_home(settings, f"set {alias} of {model_name}"), _registry(settings) as store, store.transaction():
        _require_version(store, model_name, version)
        if _alias_version(store, model_name, alias) == version:
            return AliasChange(model_name, alias, version, version, "set", changed=False)
        return _set_alias(store, model_name, alias, version, "set", reason)


def promote(settings: Settings, model_name: str, version: int, alias: str = CHAMPION, reason: str = "", *,
            publish: bool = True, catalog: Catalog | None = None) -> AliasChange:
    """Make ``version`` the ``alias`` (champion by default). Gate checks are the caller's job.

    A version promoted to champion stops being challenger, and its champion pointer is published for the
    online service (``publish=False`` only for a registry without a dbt project behind it, as in tests).
    Promoting the version that already holds the alias changes nothing (``changed`` is False).
    """
    with hold_home(settings, f"promote {model_name} v{version}"):
        pointed = publish and alias == CHAMPION
        if pointed:
            reconcile_pointers(settings, repair=True, models=[model_name], catalog=catalog)
        with _registry(settings) as store:
            _require_version(store, model_name, version)
            current = _alias_version(store, model_name, alias)
        if current == version:
            return AliasChange(model_name, alias, version, version, "promote", changed=False)
        if pointed:
            catalog = catalog if catalog is not None else load_catalog(settings)
            check_servable(settings, get_version(settings, model_name, version), catalog)
        change = _move_alias(settings, model_name, version if pointed else None, catalog,
                             lambda store: _promote(store, model_name, version, alias, reason))
        if publish:
            _follow_challenger(settings, model_name, alias, catalog)
        return change


def _promote(store: OfflineStore, model_name: str, version: int, alias: str, reason: str) -> AliasChange:
    _require_version(store, model_name, version)
    change = _set_alias(store, model_name, alias, version, "promote", reason)
    if alias == CHAMPION and _alias_version(store, model_name, CHALLENGER) == version:
        _set_alias(store, model_name, CHALLENGER, None, "remove", f"v{version} promoted to {alias}")
    return change


def _move_alias(settings: Settings, model_name: str, staged: int | None, catalog: Catalog | None,
                change: Callable[[OfflineStore], AliasChange]) -> AliasChange:
    """Commit ``change`` in one transaction; with ``staged`` (the champion's new version), stage its pointer
    before and install it after, so an interruption anywhere leaves a staged pointer that tells
    :func:`reconcile_pointers` to look."""
    if staged is not None:
        target = get_version(settings, model_name, staged)
        champion_pointer.stage(settings, champion_pointer.pointer_payload(settings, target, catalog=catalog))
    try:
        with _registry(settings) as store, store.transaction():
            result = change(store)
    except BaseException:
        if staged is not None:
            with contextlib.suppress(Exception):  # the original error matters more; the staged file stays
                reconcile_pointers(settings, repair=True, models=[model_name], catalog=catalog)
        raise
    if staged is not None:
        reconcile_pointers(settings, repair=True, models=[model_name], catalog=catalog)
    return result


def _alias_stack(store: OfflineStore, model_name: str, alias: str) -> list[int]:
    """The alias's versions as a stack: promotions (and sets) push, rollbacks pop, removals clear."""
    stack: list[int] = []
    for row in store.query(f"select version, action from {SCHEMA}.alias_history where model_name = ? and alias = ? "
                           f"order by event_id", [model_name, alias]):
        if row["action"] == "rollback":
            if stack:
                stack.pop()
        elif row["action"] == "remove" or row["version"] is None:
            stack.clear()
        elif not stack or stack[-1] != row["version"]:
            stack.append(int(row["version"]))
    return stack


def _rollback_target(store: OfflineStore, model_name: str, alias: str) -> tuple[int, int]:
    """(current, earlier): the top of the alias's stack and the version below it."""
    stack = _alias_stack(store, model_name, alias)
    if len(stack) < 2:
        raise RegistryError(f"model {model_name!r} has no earlier {alias} to roll back to "
                            f"(history: {_versions(stack, 'empty')})")
    return stack[-1], stack[-2]


def rollback(settings: Settings, model_name: str, alias: str = CHAMPION, reason: str = "", *,
             publish: bool = True, catalog: Catalog | None = None) -> AliasChange:
    """Move ``alias`` back to the version it pointed at before the current one (republishing the champion
    pointer, as :func:`promote` does)."""
    with hold_home(settings, f"rollback {model_name}"):
        pointed = publish and alias == CHAMPION
        if pointed:
            reconcile_pointers(settings, repair=True, models=[model_name], catalog=catalog)
        with _registry(settings) as store:
            _, earlier = _rollback_target(store, model_name, alias)
        if pointed:
            catalog = catalog if catalog is not None else load_catalog(settings)
            check_servable(settings, get_version(settings, model_name, earlier), catalog, "roll back")

        def roll_back(store: OfflineStore) -> AliasChange:
            current, target = _rollback_target(store, model_name, alias)
            return _set_alias(store, model_name, alias, target, "rollback", reason or f"rollback from v{current}")

        change = _move_alias(settings, model_name, earlier if pointed else None, catalog, roll_back)
        if publish:
            _follow_challenger(settings, model_name, alias, catalog)
        return change


def _follow_challenger(settings: Settings, model_name: str, moved: str, catalog: Catalog | None) -> None:
    """After ``moved`` changed: republish the challenger pointer when the challenger moved, or withdraw it
    when the champion's move left no challenger apart from the champion (an unchanged challenger keeps its
    pointer untouched, so a champion promotion reads nothing more)."""
    aliases = get_aliases(settings, model_name)
    challenger = aliases.get(CHALLENGER)
    if challenger is None or challenger == aliases.get(CHAMPION):
        champion_pointer.publish_challenger(settings, model_name, None)
    elif moved == CHALLENGER:
        publish_challenger(settings, model_name, catalog=catalog)


def publish_champion(settings: Settings, model_name: str, *, catalog: Catalog | None = None) -> champion_pointer.Pointer:
    """(Re)write ``model_name``'s champion pointer, the file the online service follows (idempotent)."""
    with hold_home(settings, f"publish {model_name}"):
        reconcile_pointers(settings, repair=True, models=[model_name], catalog=catalog)
        return champion_pointer.publish_champion(settings, resolve(settings, model_name, CHAMPION), catalog=catalog)


def publish_champions(settings: Settings, *, catalog: Catalog | None = None) -> list[champion_pointer.Pointer]:
    """Publish the champion pointer of every registered model that has a champion."""
    catalog = catalog if catalog is not None else load_catalog(settings)
    with hold_home(settings, "publish champions"):
        reconcile_pointers(settings, repair=True, catalog=catalog)  # withdraws pointers of models without one
        return [publish_champion(settings, name, catalog=catalog) for name in list_models(settings)
                if CHAMPION in get_aliases(settings, name)]


def publish_challenger(settings: Settings, model_name: str, *,
                       catalog: Catalog | None = None) -> champion_pointer.Pointer | None:
    """(Re)write ``model_name``'s challenger pointer after its aliases (idempotent), or remove it when the model
    has no challenger apart from its champion; the pointer written, or None."""
    aliases = get_aliases(settings, model_name)
    version = aliases.get(CHALLENGER)
    target = None if version is None or version == aliases.get(CHAMPION) else get_version(settings, model_name,
                                                                                              version)
    return champion_pointer.publish_challenger(settings, model_name, target, catalog=catalog)


def publish_challengers(settings: Settings, *, catalog: Catalog | None = None) -> list[champion_pointer.Pointer]:
    """:func:`publish_challenger` for every registered model; the pointers written."""
    published = [publish_challenger(settings, name, catalog=catalog) for name in list_models(settings)]
    return [p for p in published if p is not None]


# --------------------------------------------------------------------------------------------------
# The pointers against the registry


@dataclass(frozen=True)
class Mismatch:
    """A champion pointer that does not say what the registry committed (or a promotion's leftover), and,
    after a repair, what was done about it."""

    model_name: str
    problem: str  # missing, stale, moved, orphan, unreadable, interrupted
    registry_version: int | None
    pointer_version: int | None
    detail: str
    repaired: str | None = None
    error: str | None = None

    def line(self) -> str:
        """One line for an operator: the model, what is wrong and, after a repair, its outcome."""
        outcome = f"; repaired: {self.repaired}" if self.repaired else \
            f"; NOT repaired: {self.error}" if self.error else ""
        return f"{self.model_name}: {self.problem}: {self.detail}{outcome}"


@contextlib.contextmanager
def _registry_read(settings: Settings) -> Iterator[OfflineStore | None]:
    """The warehouse opened read-only, or None when it holds no registry yet; creates nothing, so the service
    may call it."""
    if not settings.warehouse_path.exists():
        yield None
        return
    with opened_state(settings, read_only=True) as store:
        present = all(store.exists(SCHEMA, t) for t in ("model_versions", "model_aliases"))
        yield store if present else None


def _champions(settings: Settings) -> dict[str, ModelVersion] | None:
    """Every model's committed champion; None when the home has no registry."""
    with _registry_read(settings) as store:
        if store is None:
            return None
        rows = store.query(f"select v.* from {SCHEMA}.model_versions v join {SCHEMA}.model_aliases a "
                           f"on a.model_name = v.model_name and a.version = v.version where a.alias = ?", [CHAMPION])
    return {r["model_name"]: _version_from_row(r, (CHAMPION,), settings.home) for r in rows}


def _compare(settings: Settings, model_name: str, champion: ModelVersion | None) -> Mismatch | None:
    """How ``model_name``'s pointer (and any staged one) differ from its committed ``champion``."""
    path = champion_pointer.pointer_path(settings, model_name)
    staged = champion_pointer.staged_version(settings, model_name)
    pointer, unreadable = None, None
    if path.exists():
        try:
            pointer = champion_pointer.read_pointer(settings, model_name)
        except (OSError, ValueError, KeyError, TypeError) as error:
            unreadable = f"{type(error).__name__}: {error}"
    ours = champion.version if champion else None
    theirs = pointer.version if pointer else None
    interrupted = f" (a promotion to v{staged} was interrupted)" if staged is not None else ""

    def found(problem: str, detail: str) -> Mismatch:
        return Mismatch(model_name, problem, ours, theirs, detail + interrupted)

    if unreadable:
        return found("unreadable", f"{path.name} cannot be read ({unreadable})")
    if champion is None:
        if pointer is not None:
            return found("orphan", f"{path.name} serves v{theirs} but the registry has no champion for it")
        return found("interrupted", "nothing is published and the registry has no champion") if staged else None
    if pointer is None:
        return found("missing", f"the registry's champion is v{ours} but no {path.name} is published")
    if theirs != ours:
        return found("stale", f"{path.name} serves v{theirs} but the registry's champion is v{ours}")
    if pointer.model_dir != champion.model_dir:  # an old absolute path resolves to its tail here (home_paths)
        return found("moved", f"{path.name} gives v{ours}'s files as {str(pointer.model_dir)!r}, the registry "
                              f"as {str(champion.model_dir)!r}")
    if staged is not None:
        return Mismatch(model_name, "interrupted", ours, theirs,
                        f"a promotion to v{staged} was interrupted before it committed; {path.name} and the "
                        f"registry agree on v{ours}")
    return None


def _repair(settings: Settings, mismatch: Mismatch, champion: ModelVersion | None, catalog: Catalog | None, *,
            republish: bool) -> Mismatch:
    """Make the pointer say what the registry committed: install the staged pointer when it is the committed
    one (no catalog needed), drop a staged pointer that never committed, else republish from the registry."""
    name = mismatch.model_name
    staged = champion_pointer.staged_version(settings, name)
    try:
        if champion is None:
            if mismatch.pointer_version is None and mismatch.problem != "unreadable":
                champion_pointer.discard_staged(settings, name)
                return dataclasses.replace(mismatch, repaired="removed the staged pointer")
            champion_pointer.remove_pointer(settings, name)
            return dataclasses.replace(mismatch, repaired="withdrew the pointer (no champion in the registry)")
        if staged == champion.version and mismatch.problem != "interrupted":
            pointer = champion_pointer.install_staged(settings, name)
            if pointer.model_dir == champion.model_dir:
                return dataclasses.replace(mismatch, repaired=f"installed the staged pointer for v{pointer.version}")
        champion_pointer.discard_staged(settings, name)
        if mismatch.problem == "interrupted":
            return dataclasses.replace(mismatch, repaired=f"dropped the staged pointer for v{staged}")
        if not republish:
            return dataclasses.replace(mismatch, error="needs the catalog to republish: run `fti doctor --repair`")
        pointer = champion_pointer.publish_champion(settings, champion, catalog=catalog)
        return dataclasses.replace(mismatch, repaired=f"republished the pointer for v{pointer.version}")
    except Exception as error:  # noqa: BLE001 - one model's failure is reported, the others still repaired
        return dataclasses.replace(mismatch, error=f"{type(error).__name__}: {error}")


def reconcile_pointers(settings: Settings, *, repair: bool, models: Sequence[str] | None = None,
                       catalog: Catalog | None = None, interrupted_only: bool = False) -> list[Mismatch]:
    """Every champion pointer that disagrees with the registry's committed champions (missing, stale, moved,
    left without a champion, unreadable) or that a promotion left half-installed; with ``repair``, rewritten
    from the committed state (under the home's lock), each mismatch then saying what was done.

    ``models`` limits the check; ``interrupted_only`` looks only at models with a staged pointer (evidence
    of an interrupted promotion) and opens the warehouse only when there is one, and it never republishes
    (which would parse the dbt project): what the service can afford at start.
    """
    names = set(models) if models is not None else None
    if interrupted_only:
        staged = set(champion_pointer.interrupted_models(settings))
        names = staged if names is None else names & staged
        if not names:
            return []
    with hold_home(settings, "reconcile champion pointers") if repair else contextlib.nullcontext():
        champions = _champions(settings)
        if names is None:
            names = set(champions or ()) | set(champion_pointer.published_models(settings)) | \
                set(champion_pointer.interrupted_models(settings))
        if champions is None:  # e.g. a service host given only the models: nothing to judge the pointers by
            if names:
                raise RegistryError(f"{settings.home} has no model registry (no registry tables in "
                                    f"{settings.warehouse_path.name}), so its champion pointers cannot be checked")
            return []
        found = [m for m in (_compare(settings, n, champions.get(n)) for n in sorted(names)) if m is not None]
        if repair:
            found = [_repair(settings, m, champions.get(m.model_name), catalog, republish=not interrupted_only)
                     for m in found]
    return found


def reconcile_at_service_start(settings: Settings) -> list[Mismatch]:
    """Finish or undo promotions that were interrupted, before the service loads its pointers. Never waits:
    when a writer holds the home it is that writer's job (and its own reconciliation's), so nothing is done."""
    if not champion_pointer.interrupted_models(settings):
        return []
    try:
        return reconcile_pointers(dataclasses.replace(settings, lock_wait_seconds=0), repair=True,
                                  interrupted_only=True)
    except HomeBusy:
        return []
