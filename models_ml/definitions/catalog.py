"""Typed feature groups and feature views, read from dbt's manifest.

The dbt project is the single source of truth: feature groups are models under `models/features/` with
`config.meta.fti`, feature views are `ml` exposures with `config.meta.fti` (their on-demand functions named
``module:function``, their training config under ``training``). A group's versions are dbt model versions
(``_v1``, ``_v2`` relations); a view's versions are exposures: ``<view>`` declares its current version and
``<view>_v<N>`` another one (version N), so a model trained on any version is scored with that version.
Python never hard-codes a table or column name; it asks the catalog. A key of `meta.fti` the catalog does not know is an error, not ignored: a typo
would otherwise silently fall back to a default. So is a column `meta.fti` names that the model does not
declare, and a time column not declared `timestamp with time zone`: caught here, in one line naming the model,
the key and the fix, rather than as a failed join or a silently shifted clock at the first run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import os
import re
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from models_ml.core.settings import Settings
from models_ml.definitions.on_demand import OnDemandError, resolve

_TTL_PATTERN = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week)s?\s*$")


class CatalogError(ValueError):
    """The dbt project declares something the catalog cannot use; the message names it."""


def parse_ttl(text: str | None, where: str) -> dt.timedelta | None:
    """'3 hours', '2 days', ... -> timedelta; None or empty means no TTL."""
    if text in (None, ""):
        return None
    match = _TTL_PATTERN.match(str(text))
    if not match:
        raise CatalogError(f"{where}: ttl {text!r} is not like '3 hours' or '2 days'")
    amount, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(**{f"{unit}s": amount})


@dataclass(frozen=True)
class Feature:
    name: str
    data_type: str
    description: str


#: the schema external source groups are read under: each engine connection mounts them there (a view per
#: group over the upstream file, see :mod:`models_ml.offline.external`); nothing of theirs is stored
EXTERNAL_SCHEMA = "fti_external"
EXTERNAL_FORMATS: tuple[str, ...] = ("duckdb", "parquet")


@dataclass(frozen=True)
class ExternalSource:
    """Where an external feature group lives: a relation fti reads in place and never builds or copies.

    ``kind`` is ``source``: a dbt source table carrying ``meta.fti``, a table of another DuckDB file
    (attached read-only) or Parquet files. ``location`` is the path as declared, ``path`` the same resolved
    against FTI_HOME (when the catalog was loaded for a home).
    ``loaded_at_field``, ``warn_after`` and ``error_after`` are dbt's source freshness declaration."""

    kind: str
    source: str  # "<source>.<table>" as dbt names it
    location: str
    path: str
    format: str
    upstream_schema: str
    upstream_table: str
    loaded_at_field: str | None = None
    warn_after: dt.timedelta | None = None
    error_after: dt.timedelta | None = None

    def describe(self) -> str:
        """Where it lives, in one phrase: ``duckdb /srv/ops.duckdb main.daily_capacity``."""
        table = f" {self.upstream_schema}.{self.upstream_table}" if self.format == "duckdb" else ""
        return f"{self.format} {self.path}{table}"


@dataclass(frozen=True)
class FeatureGroup:
    """One versioned feature group: a dbt incremental model with `meta.fti`, or an external relation fti
    reads in place (``external``: a dbt source table with `meta.fti`)."""

    name: str
    version: int | None
    latest_version: int | None
    schema: str
    relation: str
    entity: tuple[str, ...]
    event_time: str
    created_time: str | None
    ttl: dt.timedelta | None
    online: bool
    description: str
    columns: tuple[Feature, ...]
    unique_id: str
    unique_grain: bool = False  # a dbt test proves one row per (entity, event time) at most
    unique_entity: bool = False  # a dbt test proves one row per entity at most (static attributes)
    freshness: tuple[tuple[str, Any], ...] = ()  # meta.fti.freshness as declared; read by models_ml.monitoring.config
    external: ExternalSource | None = None  # set when fti reads the group in place instead of building it

    @property
    def qualified_relation(self) -> str:
        return f"{self.schema}.{self.relation}"

    @property
    def kind(self) -> str:
        """``built`` (an incremental dbt model) or ``external source``."""
        return f"external {self.external.kind}" if self.external else "built"

    @property
    def features(self) -> tuple[Feature, ...]:
        """Columns that are features: not keys, event time or created time."""
        bookkeeping = {*self.entity, self.event_time, self.created_time}
        return tuple(c for c in self.columns if c.name not in bookkeeping)

    def feature(self, name: str) -> Feature:
        for column in self.columns:
            if column.name == name:
                return column
        raise CatalogError(f"feature group {self.name} v{self.version} has no column {name!r}")


@dataclass(frozen=True)
class FeatureRef:
    """A selection of features of one group inside a feature view.

    ``on_demand_inputs`` are further columns of the group that are joined (offline) and looked up (online)
    only as inputs of the view's on-demand features, not given to the model (e.g. a timestamp).
    """

    group: FeatureGroup
    features: tuple[str, ...]
    join_keys: dict[str, str]  # spine column -> group column
    prefix: str
    on_demand_inputs: tuple[str, ...] = ()

    def output_name(self, feature: str) -> str:
        return f"{self.prefix}{feature}"

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column taken from the group: the model's features, then the on-demand inputs."""
        return (*self.features, *self.on_demand_inputs)


@dataclass(frozen=True)
class OnDemandFeature:
    """A feature computed from the request and stored features by an on-demand function, which the view
    names ``module:function`` (see models_ml/definitions/on_demand.py).

    ``function`` is the function's name and ``module`` the module that holds it (a snapshot's definition
    records the name only, as it did when functions lived in one module, so snapshot ids do not move).
    ``inputs`` maps each parameter of the function to a column of the view: a label (request) column or the
    output name of a joined column (``prefix + column``).
    """

    name: str
    function: str
    inputs: dict[str, str]
    module: str = ""

    @property
    def reference(self) -> str:
        """``module:function``, as the view declares it; what :func:`models_ml.definitions.on_demand.resolve`
        takes."""
        return f"{self.module}:{self.function}"


@dataclass(frozen=True)
class RequestBound:
    """The values a request feature may take, as its view declares them (``meta.fti.label.request_features``
    entries ``{name, min, max}`` or ``{name, values}``): a number within ``[minimum, maximum]`` (inclusive;
    either end may be open), or one of ``values``. The service refuses anything else with a 422, so a model
    never scores an hour of 99 or a negative distance it never saw in training."""

    name: str
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str | int, ...] | None = None

    def allows(self, value: Any) -> bool:
        if self.values is not None:
            return value in self.values
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def describe(self) -> str:
        """The allowed values in words: 'between 0 and 23', 'at least 0', "one of 'basic', 'premium'"."""
        if self.values is not None:
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.minimum is not None and self.maximum is not None:
            return f"between {self.minimum} and {self.maximum}"
        return f"at least {self.minimum}" if self.minimum is not None else f"at most {self.maximum}"


@dataclass(frozen=True)
class LabelSpec:
    """The label model: the spine of training snapshots, with its target and request features (and the
    bounds declared for some of them)."""

    model: str
    schema: str
    relation: str
    entity: tuple[str, ...]
    spine_time: str
    target: str
    event_time: str
    request_features: tuple[str, ...]
    slices: tuple[str, ...]
    request_bounds: tuple[RequestBound, ...] = ()

    @property
    def qualified_relation(self) -> str:
        return f"{self.schema}.{self.relation}"

    @property
    def order_keys(self) -> list[str]:
        """Spine time then the entity keys, once each (an entity key may be the spine time itself)."""
        return list(dict.fromkeys([self.spine_time, *self.entity]))


@dataclass(frozen=True)
class InferenceSpine:
    """The model listing what batch inference scores: the entities and their prediction times, known before
    the outcome (tomorrow's flights, this month's active customers). It carries the label's entity keys,
    spine time, event time, request features and join keys under the label's column names, so the same
    point-in-time join serves it; it has no target."""

    model: str
    schema: str
    relation: str

    @property
    def qualified_relation(self) -> str:
        return f"{self.schema}.{self.relation}"


@dataclass(frozen=True)
class SourceTable:
    """A dbt source table and the relation it names (what lands there, or another team's data), with the
    domains whose build it feeds (a model downstream of it is downstream of the domain's sources)."""

    source: str
    name: str
    schema: str
    identifier: str
    feeds: frozenset[str] = frozenset()

    @property
    def selector(self) -> str:
        return f"source:{self.source}.{self.name}"


@dataclass(frozen=True)
class Domain:
    """One domain's raw data: the dbt sources it lands (their source-level ``meta.fti``) and the loader that
    lands them, an importable module named in that meta (see :mod:`models_ml.features.pipeline`)."""

    name: str
    loader: str
    sources: tuple[str, ...]

    @property
    def dbt_selection(self) -> str:
        """Everything its data feeds: the domain's sources and every model downstream of them."""
        return " ".join(f"source:{source}+" for source in self.sources)


TRAINING_SECTIONS: tuple[str, ...] = ("train", "split", "evaluation", "gate")
# The split section is read key by key by the training pipeline (the other sections by typed config classes,
# which reject unknown settings themselves), so its keys are checked here.
SPLIT_KEYS: tuple[str, ...] = ("start", "end", "validation_start", "test_start", "fractions")
_SETTING_TYPES = (str, int, float, bool)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


@dataclass(frozen=True)
class TrainingConfig:
    """A view's training config as its exposure declares it (``meta.fti.training``): per section, its
    settings as (key, value) pairs in declared order. Typed and defaulted by the training code
    (train.TrainConfig, evaluate.EvaluationConfig, evaluate.GateConfig, the pipeline's split).

    Pairs and tuples rather than dicts and lists, so the view holding it stays immutable and comes back equal
    from its JSON form (the champion pointer serializes views generically)."""

    train: tuple[tuple[str, Any], ...] = ()
    split: tuple[tuple[str, Any], ...] = ()
    evaluation: tuple[tuple[str, Any], ...] = ()
    gate: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for section in TRAINING_SECTIONS:
            pairs = tuple((str(key), _frozen(value)) for key, value in getattr(self, section))
            object.__setattr__(self, section, pairs)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The declared sections as plain dicts (list values as lists): the shape a TOML file of
        ``[train]``, ``[split]``, ``[evaluation]`` and ``[gate]`` tables gives."""
        return {section: {key: _thawed(value) for key, value in pairs}
                for section in TRAINING_SECTIONS if (pairs := getattr(self, section))}


@dataclass(frozen=True)
class FeatureView:
    """The input schema of one ML model: a label spine plus versioned feature selections, and how to train
    its model."""

    name: str
    version: int
    description: str
    label: LabelSpec
    features: tuple[FeatureRef, ...]
    on_demand: tuple[OnDemandFeature, ...] = ()
    training: TrainingConfig = TrainingConfig()
    inference_spine: InferenceSpine | None = None
    monitoring: tuple[tuple[str, Any], ...] = ()  # meta.fti.monitoring as declared; read by models_ml.monitoring.config

    @property
    def scoring_relation(self) -> tuple[str, str]:
        """(schema, name) of what batch inference scores: the inference spine, or (a view without one) the
        label model, which re-scores only entities whose outcome is already known."""
        spine = self.inference_spine or self.label
        return spine.schema, spine.relation

    @property
    def feature_columns(self) -> list[str]:
        """Every model input, in a fixed order: request features, each group's features, on-demand features."""
        names = list(self.label.request_features)
        for ref in self.features:
            names += [ref.output_name(f) for f in ref.features]
        names += [f.name for f in self.on_demand]
        return names

    @property
    def joined_columns(self) -> list[str]:
        """Output names of every column the point-in-time join (or the online lookup) brings in."""
        return [ref.output_name(c) for ref in self.features for c in ref.columns]

    @property
    def on_demand_request_inputs(self) -> list[str]:
        """Label (request) columns the on-demand features read: the spine and a request must carry them."""
        joined = set(self.joined_columns)
        return list(dict.fromkeys(c for f in self.on_demand for c in f.inputs.values() if c not in joined))

    @property
    def request_columns(self) -> list[str]:
        """What an online request must carry besides the join keys: request features and on-demand inputs."""
        return list(dict.fromkeys([*self.label.request_features, *self.on_demand_request_inputs]))

    def group_versions(self) -> dict[str, int | None]:
        return {ref.group.name: ref.group.version for ref in self.features}

    @property
    def group_labels(self) -> list[str]:
        """The name each feature selection is reported under (missing groups, freshness): its group's name,
        with the prefix when the view selects the same group twice."""
        names = [ref.group.name for ref in self.features]
        return [f"{ref.group.name}[{ref.prefix}]" if names.count(ref.group.name) > 1 else ref.group.name
                for ref in self.features]


_Derived = TypeVar("_Derived")
_UNSET: Any = object()


def per_view(derive: Callable[[FeatureView], _Derived]) -> Callable[[FeatureView], _Derived]:
    """Memoize ``derive(view)`` per view object, for what the online path derives from a view on every request.

    Views are immutable but unhashable (they hold dicts), so the memo is keyed by identity; an entry goes when
    its view is collected, before its id can be reused."""
    derived: dict[int, _Derived] = {}

    @functools.wraps(derive)
    def memoized(view: FeatureView) -> _Derived:
        value = derived.get(id(view), _UNSET)
        if value is _UNSET:
            value = derived[id(view)] = derive(view)
            weakref.finalize(view, derived.pop, id(view), None)
        return value

    return memoized


@dataclass
class Catalog:
    """Everything the dbt project declares for fti. ``views`` holds each view's current version (what
    training uses unless asked for another); ``view_versions`` every declared version by (name, version),
    so a model trained on another version is still scored with the view it was trained on."""

    groups: dict[tuple[str, int | None], FeatureGroup] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    view_versions: dict[tuple[str, int], FeatureView] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    # domain name -> the qualified relations (feature groups, labels, inference spines) its sources feed
    domain_relations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # every dbt source table of the project, of any domain or none
    source_tables: tuple[SourceTable, ...] = ()

    def group(self, name: str, version: int | None = None) -> FeatureGroup:
        candidates = [g for (n, _), g in self.groups.items() if n == name]
        if not candidates:
            known = ", ".join(sorted({n for n, _ in self.groups})) or "none"
            raise CatalogError(f"no feature group {name!r} (known: {known})")
        if version is None:
            latest = candidates[0].latest_version
            version = latest if latest is not None else max(g.version or 0 for g in candidates)
        for candidate in candidates:
            if candidate.version == version or (version == 0 and candidate.version is None):
                return candidate
        raise CatalogError(
            f"feature group {name!r} has no version {version} "
            f"(versions: {sorted(g.version for g in candidates if g.version is not None)})"
        )

    def view(self, name: str | None = None, version: int | None = None) -> FeatureView:
        """The view called ``name`` (without a name, the only view there is) at ``version`` (default: its
        current version)."""
        current = self.views[_named_or_only(name, sorted(self.views), "feature view", "--view")]
        if version is None or int(version) == current.version:
            return current
        found = self.view_versions.get((current.name, int(version)))
        if found is None:
            raise CatalogError(f"feature view {current.name!r} has no version {version} "
                               f"(versions: {self.versions_of_view(current.name)})")
        return found

    def versions_of_view(self, name: str) -> list[int]:
        """Every declared version of the view ``name``, in order."""
        found = {v for n, v in self.view_versions if n == name}
        if name in self.views:
            found.add(self.views[name].version)
        return sorted(found)

    def all_views(self) -> list[FeatureView]:
        """Every declared version of every view, by name then version."""
        every = {(v.name, v.version): v for v in self.view_versions.values()}
        every.update({(v.name, v.version): v for v in self.views.values()})
        return [every[key] for key in sorted(every)]

    def domain(self, name: str | None = None) -> Domain:
        """The domain called ``name``; without a name, the only domain there is."""
        return self.domains[_named_or_only(name, sorted(self.domains), "domain", "--domain")]


def _named_or_only(name: str | None, known: list[str], what: str, flag: str) -> str:
    """``name`` if known; without a name the only one there is; otherwise a one-line error listing them."""
    listed = ", ".join(known) or "none"
    if name is None:
        if len(known) == 1:
            return known[0]
        raise CatalogError(f"which {what}? the project has {len(known)} ({listed}): name one with {flag}")
    if name not in known:
        raise CatalogError(f"no {what} {name!r} (known: {listed})")
    return name


GROUP_KEYS: tuple[str, ...] = ("entity", "event_time", "created_time", "ttl", "online", "freshness")
VIEW_KEYS: tuple[str, ...] = ("version", "label", "inference_spine", "features", "on_demand", "training",
                              "monitoring")
INFERENCE_SPINE_KEYS: tuple[str, ...] = ("model",)
DOMAIN_KEYS: tuple[str, ...] = ("domain", "loader")
LABEL_KEYS: tuple[str, ...] = ("model", "entity", "spine_time", "target", "event_time", "request_features", "slices")
SELECTION_KEYS: tuple[str, ...] = ("group", "version", "join_keys", "prefix", "features", "on_demand_inputs")
ON_DEMAND_KEYS: tuple[str, ...] = ("name", "function", "inputs")


def _check_keys(mapping: Mapping[str, Any], known: Collection[str], where: str, path: str) -> None:
    """An unknown key of ``meta.fti`` is an error, in one line naming it and the keys that are known."""
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise CatalogError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(f'{path}.{k}' for k in unknown)}; known: {', '.join(known)}")


def _declared(value: Any, where: str, path: str) -> tuple[tuple[str, Any], ...]:
    """A mapping of ``meta.fti`` carried as declared, frozen to (key, value) pairs, for the module that reads it."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise CatalogError(f"{where}: {path} must be a mapping of settings, got {value!r}")
    return tuple((str(key), _frozen(item)) for key, item in value.items())


def _fti_meta(node: dict[str, Any]) -> dict[str, Any] | None:
    config_meta = (node.get("config") or {}).get("meta") or {}
    meta = config_meta.get("fti") or (node.get("meta") or {}).get("fti")
    return meta


def _columns(node: dict[str, Any]) -> tuple[Feature, ...]:
    return tuple(
        Feature(name=c["name"], data_type=(c.get("data_type") or "").lower(), description=c.get("description") or "")
        for c in node.get("columns", {}).values()
    )


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


TIMESTAMPTZ_TYPES: tuple[str, ...] = ("timestamp with time zone", "timestamptz")
_COLUMN_FIX = "fix the name or declare the column in its YAML"
_TIMESTAMPTZ_FIX = "declare it `timestamp with time zone` and cast in SQL (`::timestamptz`), storage is UTC"


def _declared_types(node: Mapping[str, Any]) -> dict[str, str]:
    """Column name -> its declared data_type (lower case, single spaces; '' when none), in declared order:
    the columns the model's YAML promises, which is all the catalog may rely on before anything is built."""
    return {c["name"]: " ".join((c.get("data_type") or "").lower().split())
            for c in (node.get("columns") or {}).values()}


def _require_columns(declared: Mapping[str, str], named: Collection[tuple[str, str]], where: str, model: str,
                     joined: bool = False) -> None:
    """Each (key, column) names a declared column of ``model``: otherwise one line naming the key, the column,
    the columns there are and the fix. A misspelt column would otherwise surface only as a failed join or a
    missing request field at the first run. ``joined``: the column could also have been a joined one."""
    for key, column in named:
        if column not in declared:
            what = "neither a joined feature column nor" if joined else "not"
            raise CatalogError(f"{where}: {key} {column!r} is {what} a column of {model} "
                               f"(columns: {', '.join(declared) or 'none declared'}); {_COLUMN_FIX}")


def _require_timestamptz(declared: Mapping[str, str], named: Collection[tuple[str, str]], where: str,
                         model: str) -> None:
    """Each (key, column) is declared ``timestamp with time zone``: a naive timestamp would be read in
    whatever zone the session has, and point-in-time joins would compare instants that are hours apart."""
    for key, column in named:
        declared_type = declared.get(column, "")
        if declared_type not in TIMESTAMPTZ_TYPES:
            shown = f"declared {declared_type!r}" if declared_type else "declared without a data_type"
            raise CatalogError(f"{where}: {key} {column!r} of {model} is {shown}, not timestamp with time zone; "
                               f"{_TIMESTAMPTZ_FIX}")


def _check_group_columns(node: Mapping[str, Any], meta: Mapping[str, Any], entity: tuple[str, ...],
                         where: str, what: str = "model") -> None:
    """The group's keys and times are declared columns, its times timestamptz. A group must declare its
    columns: its features are read from them, and without them nothing `meta.fti` names could be checked."""
    declared, model = _declared_types(node), f"{what} {node['name']}"
    if not declared:
        raise CatalogError(f"{where}: {model} declares no columns; a feature group must declare every column "
                           f"(name and data_type) in its YAML")
    times = [("meta.fti.event_time", meta["event_time"])]
    if meta.get("created_time"):
        times.append(("meta.fti.created_time", meta["created_time"]))
    _require_columns(declared, [*(("meta.fti.entity", c) for c in entity), *times], where, model)
    _require_timestamptz(declared, times, where, model)


def _group(node: dict[str, Any], meta: dict[str, Any]) -> FeatureGroup:
    where = f"feature group {node['name']}"
    _check_keys(meta, GROUP_KEYS, where, "meta.fti")
    for required in ("entity", "event_time"):
        if not meta.get(required):
            raise CatalogError(f"{where}: meta.fti.{required} is missing")
    columns = _columns(node)
    entity = _as_tuple(meta["entity"])
    _check_group_columns(node, meta, entity, where)
    version = node.get("version")
    return FeatureGroup(
        name=node["name"],
        version=int(version) if version is not None else None,
        latest_version=int(node["latest_version"]) if node.get("latest_version") is not None else None,
        schema=node["schema"],
        relation=node.get("alias") or node["name"],
        entity=entity,
        event_time=meta["event_time"],
        created_time=meta.get("created_time"),
        ttl=parse_ttl(meta.get("ttl"), where),
        online=bool(meta.get("online", False)),
        description=(node.get("description") or "").strip(),
        columns=columns,
        unique_id=node["unique_id"],
        freshness=_declared(meta.get("freshness"), where, "meta.fti.freshness"),
    )


EXTERNAL_GROUP_KEYS: tuple[str, ...] = (*GROUP_KEYS, "location")
_LOCATION_FIX = ("set meta.fti.location to the DuckDB file (`.duckdb`) or the Parquet files (a `.parquet` file, "
                 "a folder of them or a glob), relative to FTI_HOME or absolute")
_FRESHNESS_PERIODS = {"minute": "minutes", "hour": "hours", "day": "days"}


def _resolved(location: str, home: Path | None) -> str:
    """The declared location as a path: relative ones are under FTI_HOME (when the catalog knows the home)."""
    path = Path(location).expanduser()
    return str(path if path.is_absolute() or home is None else Path(home) / path)


def _location_format(location: str, where: str) -> str:
    """``duckdb`` for a DuckDB file, ``parquet`` for Parquet files (a file, a folder or a glob)."""
    name = Path(location).name.lower()
    if name.endswith((".duckdb", ".db")):
        return "duckdb"
    if name.endswith(".parquet") or any(c in location for c in "*?[") or "." not in name:
        return "parquet"
    raise CatalogError(f"{where}: meta.fti.location {location!r} is neither a DuckDB file nor Parquet files; "
                       f"{_LOCATION_FIX}")


def _freshness_after(spec: Any) -> dt.timedelta | None:
    """dbt's ``{count: 2, period: day}`` as a timedelta (None when not declared)."""
    if not spec or spec.get("count") is None or spec.get("period") not in _FRESHNESS_PERIODS:
        return None
    return dt.timedelta(**{_FRESHNESS_PERIODS[spec["period"]]: int(spec["count"])})


def _source_freshness(node: Mapping[str, Any]) -> dict[str, Any]:
    freshness = node.get("freshness") or (node.get("config") or {}).get("freshness") or {}
    return {"loaded_at_field": node.get("loaded_at_field") or (node.get("config") or {}).get("loaded_at_field"),
            "warn_after": _freshness_after(freshness.get("warn_after")),
            "error_after": _freshness_after(freshness.get("error_after"))}


def _source_group(node: dict[str, Any], meta: dict[str, Any], home: Path | None) -> FeatureGroup:
    """A dbt source table carrying a group's ``meta.fti`` and ``location``: an external group that fti reads
    where it is (see :class:`ExternalSource`). Its columns and types are the source's declared ``columns``;
    the created time defaults to dbt's ``loaded_at_field``, so the online materialization reads it
    incrementally whenever the upstream table says when each row came."""
    source = f"{node['source_name']}.{node['name']}"
    where = f"feature group {node['name']} (dbt source {source})"
    _check_keys(meta, EXTERNAL_GROUP_KEYS, where, "meta.fti")
    for required in ("entity", "event_time", "location"):
        if not meta.get(required):
            fix = f"; {_LOCATION_FIX}" if required == "location" else ""
            raise CatalogError(f"{where}: meta.fti.{required} is missing{fix}")
    freshness = _source_freshness(node)
    meta = {**meta, "created_time": meta.get("created_time") or freshness["loaded_at_field"]}
    entity = _as_tuple(meta["entity"])
    _check_group_columns(node, meta, entity, where, what="source table")
    if freshness["loaded_at_field"]:
        declared = _declared_types(node)
        named = [("loaded_at_field", freshness["loaded_at_field"])]
        _require_columns(declared, named, where, f"source table {node['name']}")
        _require_timestamptz(declared, named, where, f"source table {node['name']}")
    location = str(meta["location"])
    external = ExternalSource(
        kind="source", source=source, location=location, path=_resolved(location, home),
        format=_location_format(location, where), upstream_schema=node.get("schema") or "main",
        upstream_table=node.get("identifier") or node["name"], **freshness,
    )
    return FeatureGroup(
        name=node["name"], version=None, latest_version=None, schema=EXTERNAL_SCHEMA, relation=node["name"],
        entity=entity, event_time=meta["event_time"], created_time=meta["created_time"],
        ttl=parse_ttl(meta.get("ttl"), where), online=bool(meta.get("online", False)),
        description=(node.get("description") or "").strip(), columns=_columns(node), unique_id=node["unique_id"],
        external=external,
    )


def _label(nodes: dict[str, dict[str, Any]], spec: dict[str, Any], where: str) -> LabelSpec:
    model = spec.get("model")
    matches = [n for n in nodes.values() if n.get("resource_type") == "model" and n["name"] == model]
    if not matches:
        raise CatalogError(f"{where}: label model {model!r} not found")
    node = matches[0]
    _check_keys(spec, LABEL_KEYS, where, "meta.fti.label")
    for required in ("entity", "spine_time", "target"):
        if not spec.get(required):
            raise CatalogError(f"{where}: meta.fti.label.{required} is missing")
    declared = _declared_types(node)
    bounds = [_request_bound(entry, declared, where, f"meta.fti.label.request_features[{i}]")
              for i, entry in enumerate(_as_entries(spec.get("request_features")))]
    return LabelSpec(
        model=model,
        schema=node["schema"],
        relation=node.get("alias") or node["name"],
        entity=_as_tuple(spec["entity"]),
        spine_time=spec["spine_time"],
        target=spec["target"],
        event_time=spec.get("event_time") or spec["spine_time"],
        request_features=tuple(bound.name for bound in bounds),
        slices=_as_tuple(spec.get("slices")),
        request_bounds=tuple(bound for bound in bounds if bound != RequestBound(bound.name)),
    )


REQUEST_FEATURE_KEYS: tuple[str, ...] = ("name", "min", "max", "values")
_INTEGER_TYPES = ("tinyint", "smallint", "integer", "int", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
                  "ubigint")
_NUMERIC_TYPES = (*_INTEGER_TYPES, "float", "real", "double", "double precision", "decimal", "numeric")
_TEXT_TYPES = ("varchar", "text", "string", "char", "bpchar")
_BOUND_FIX = ("declare `{name: <column>, min: <number>, max: <number>}` (either end may be left out) or "
              "`{name: <column>, values: [...]}`")


def _as_entries(value: Any) -> list[Any]:
    """``request_features`` as a list of entries (a column name or a mapping), a lone name as one entry."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, Mapping)) else list(value)


def _base_type(declared_type: str) -> str:
    """``decimal(10, 2)`` -> ``decimal``; ``character varying`` -> ``varchar``."""
    base = declared_type.split("(", 1)[0].strip()
    return "varchar" if base == "character varying" else base


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _request_bound(entry: Any, declared: Mapping[str, str], where: str, path: str) -> RequestBound:
    """One request feature: a column name, or a mapping with its bounds (:class:`RequestBound`), checked
    strictly against the label model's declared type, so a bound that could never hold (or never fail)
    stops the parse instead of refusing every request or none."""
    if isinstance(entry, str):
        return RequestBound(entry)
    if not isinstance(entry, Mapping):
        raise CatalogError(f"{where}: {path} must be a column name or a mapping, got {entry!r}; {_BOUND_FIX}")
    _check_keys(entry, REQUEST_FEATURE_KEYS, where, path)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError(f"{where}: {path} needs `name: <column>`; {_BOUND_FIX}")
    path = f"{path} ({name})"
    kind = _base_type(declared.get(name, ""))
    if "values" in entry:
        if "min" in entry or "max" in entry:
            raise CatalogError(f"{where}: {path} declares values and min/max; {_BOUND_FIX}")
        return RequestBound(name, values=_allowed_values(entry["values"], kind, where, path))
    low, high = entry.get("min"), entry.get("max")
    for key, value in (("min", low), ("max", high)):
        if key in entry and not _is_number(value):
            raise CatalogError(f"{where}: {path}.{key} must be a finite number, got {value!r}")
    if low is None and high is None:
        raise CatalogError(f"{where}: {path} declares no bound; list the bare column name or {_BOUND_FIX}")
    if low is not None and high is not None and low > high:
        raise CatalogError(f"{where}: {path} has min {low} above max {high}; declare min <= max")
    if kind and kind not in _NUMERIC_TYPES:
        raise CatalogError(f"{where}: {path} has min/max but is declared {declared[name]!r}, not a number; "
                           f"bound a text column with `values: [...]`")
    return RequestBound(name, minimum=low, maximum=high)


def _allowed_values(values: Any, kind: str, where: str, path: str) -> tuple[str | int, ...]:
    """A non-empty list of distinct texts (a text column) or integers (an integer column)."""
    if not isinstance(values, list) or not values:
        raise CatalogError(f"{where}: {path}.values must be a non-empty list, got {values!r}")
    if kind in _INTEGER_TYPES:
        wanted, what = (int,), "integers"
    elif kind in _TEXT_TYPES:
        wanted, what = (str,), "texts"
    elif not kind:  # declared without a data_type: texts or integers, as the values say
        wanted, what = (str, int), "texts or integers"
    else:
        raise CatalogError(f"{where}: {path}.values is declared on a {kind} column; values are for text and "
                           f"integer columns (bound a number with min/max)")
    wrong = [v for v in values if not isinstance(v, wanted) or isinstance(v, bool)]
    if wrong:
        raise CatalogError(f"{where}: {path}.values must be {what} (the column is {kind or 'text'}), "
                           f"got {wrong[0]!r}")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise CatalogError(f"{where}: {path}.values lists {', '.join(repeated)} more than once")
    return tuple(values)


def _model_node(nodes: dict[str, dict[str, Any]], name: Any) -> dict[str, Any] | None:
    return next((n for n in nodes.values() if n.get("resource_type") == "model" and n["name"] == name), None)


def _inference_spine(nodes: dict[str, dict[str, Any]], spec: Any, where: str) -> InferenceSpine | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not spec.get("model"):
        raise CatalogError(f"{where}: meta.fti.inference_spine must be a mapping with `model: <dbt model>`, "
                           f"got {spec!r}")
    _check_keys(spec, INFERENCE_SPINE_KEYS, where, "meta.fti.inference_spine")
    node = _model_node(nodes, spec["model"])
    if node is None:
        raise CatalogError(f"{where}: inference spine model {spec['model']!r} not found in the dbt project")
    return InferenceSpine(model=node["name"], schema=node["schema"], relation=node.get("alias") or node["name"])


def _domains(sources: dict[str, dict[str, Any]]) -> dict[str, Domain]:
    """Domains from the sources' source-level ``meta.fti`` (``domain``, ``loader``), one per domain name."""
    found: dict[str, Domain] = {}
    for node in sources.values():
        meta = (node.get("source_meta") or {}).get("fti")
        if not meta:
            continue
        where = f"source {node['source_name']}"
        _check_keys(meta, DOMAIN_KEYS, where, "meta.fti")
        name, loader = meta.get("domain"), meta.get("loader")
        if not name or not loader:
            raise CatalogError(f"{where}: meta.fti needs `domain` (a name) and `loader` (an importable module)")
        known = found.get(name)
        if known and known.loader != loader:
            raise CatalogError(f"{where}: domain {name!r} has two loaders, {known.loader} and {loader}")
        sources_of = tuple(dict.fromkeys([*(known.sources if known else ()), node["source_name"]]))
        found[name] = Domain(name=name, loader=loader, sources=sources_of)
    return found


_VERSIONED_EXPOSURE = re.compile(r"^(?P<name>.+)_v(?P<version>\d+)$")


def _view_identity(exposure: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, int, bool]:
    """(view name, version, current): an exposure ``<view>_v<N>`` declares version N of ``<view>`` besides
    its current one, the unsuffixed exposure (``meta.fti.version`` must then say N too)."""
    where = f"feature view {exposure['name']}"
    try:
        version = int(meta.get("version", 1))
    except (TypeError, ValueError):
        raise CatalogError(f"{where}: meta.fti.version must be a whole number, got {meta.get('version')!r}") from None
    match = _VERSIONED_EXPOSURE.match(exposure["name"])
    if match is None:
        return exposure["name"], version, True
    if int(match.group("version")) != version:
        raise CatalogError(f"{where}: the name says version {match.group('version')} but meta.fti.version is "
                           f"{version}; make them agree (an exposure `<view>_v<N>` declares version N of <view>)")
    return match.group("name"), version, False


def _view(exposure: dict[str, Any], meta: dict[str, Any], catalog: Catalog, nodes: dict[str, Any]) -> FeatureView:
    where = f"feature view {exposure['name']}"
    name, version, _ = _view_identity(exposure, meta)
    _check_keys(meta, VIEW_KEYS, where, "meta.fti")
    refs = []
    for i, entry in enumerate(meta.get("features") or []):
        _check_keys(entry, SELECTION_KEYS, where, f"meta.fti.features[{i}]")
        group = catalog.group(entry["group"], entry.get("version"))
        inputs = _as_tuple(entry.get("on_demand_inputs"))
        features = _as_tuple(entry.get("features"))
        if not features and not ("features" in entry and inputs):  # an explicit [] with inputs: inputs only
            features = tuple(f.name for f in group.features if f.name not in inputs)
        for feature in (*features, *inputs):
            group.feature(feature)
        join_keys = dict(entry.get("join_keys") or {k: k for k in group.entity})
        if sorted(join_keys.values()) != sorted(group.entity):
            raise CatalogError(
                f"{where}: features[{i}] join_keys {join_keys} must map onto the entity {list(group.entity)}"
            )
        refs.append(FeatureRef(group, features, join_keys, entry.get("prefix", ""), inputs))
    label = _label(nodes, meta.get("label") or {}, where)
    spine = _inference_spine(nodes, meta.get("inference_spine"), where)
    view = FeatureView(
        name=name,
        version=version,
        description=(exposure.get("description") or "").strip(),
        label=label,
        features=tuple(refs),
        on_demand=_on_demand(meta.get("on_demand") or [], where),
        training=_training(meta.get("training"), where),
        inference_spine=spine,
        monitoring=_declared(meta.get("monitoring"), where, "meta.fti.monitoring"),
    )
    columns = [*view.feature_columns, *(c for ref in view.features for c in map(ref.output_name, ref.on_demand_inputs))]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise CatalogError(f"{where}: output feature names clash: {duplicated}; give the groups a prefix")
    _check_view_columns(view, meta, nodes, where)
    _check_on_demand_names(view, nodes, where)
    return view


def _on_demand(entries: list[dict[str, Any]], where: str) -> tuple[OnDemandFeature, ...]:
    """The view's on-demand features; each names a declared function as ``module:function`` (its module is
    imported here, so a wrong name fails when the catalog is built, not at the first request) and binds
    every parameter of it to a view column."""
    features = []
    for i, entry in enumerate(entries):
        _check_keys(entry, ON_DEMAND_KEYS, where, f"meta.fti.on_demand[{i}]")
        name, reference = entry.get("name"), entry.get("function")
        if not name or not reference:
            raise CatalogError(f"{where}: on_demand[{i}] needs a name and a function (module:function)")
        try:
            function = resolve(str(reference))
        except OnDemandError as error:
            raise CatalogError(f"{where}: on-demand feature {name!r}: {error}") from error
        module, _, short_name = str(reference).partition(":")
        inputs = dict(entry.get("inputs") or {})
        expected = list(function.parameters)
        if sorted(inputs) != sorted(expected):
            raise CatalogError(f"{where}: on_demand {name!r} must bind exactly the parameters {expected} of "
                               f"{reference}, got {sorted(inputs)}")
        features.append(OnDemandFeature(name, short_name, {p: inputs[p] for p in expected}, module))
    return tuple(features)


def _training(spec: Any, where: str) -> TrainingConfig:
    """The view's ``meta.fti.training``: sections of plain settings (numbers, strings, booleans, lists)."""
    if spec is None:
        return TrainingConfig()
    if not isinstance(spec, Mapping):
        raise CatalogError(f"{where}: meta.fti.training must be a mapping of sections "
                           f"({', '.join(TRAINING_SECTIONS)}), got {spec!r}")
    _check_keys(spec, TRAINING_SECTIONS, where, "meta.fti.training")
    sections: dict[str, tuple[tuple[str, Any], ...]] = {}
    for section, settings in spec.items():
        path = f"meta.fti.training.{section}"
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            raise CatalogError(f"{where}: {path} must be a mapping of settings, got {settings!r}")
        if section == "split":
            _check_keys(settings, SPLIT_KEYS, where, path)
        for key, value in settings.items():
            values = value if isinstance(value, list) else [value]
            if not all(v is None or isinstance(v, _SETTING_TYPES) for v in values):
                raise CatalogError(f"{where}: {path}.{key} must be a number, string, boolean or a list of "
                                   f"them, got {value!r}")
        sections[section] = tuple(settings.items())
    return TrainingConfig(**sections)


# Label columns a view names that an inference spine does not carry: it exists before the outcome.
_LABEL_ONLY_KEYS: tuple[str, ...] = ("meta.fti.label.target", "meta.fti.label.slices")


def _label_times(view: FeatureView) -> list[tuple[str, str]]:
    """(key, column) of the label's times: the spine time, and the event time when it is another column."""
    label = view.label
    times = [("meta.fti.label.spine_time", label.spine_time)]
    if label.event_time != label.spine_time:
        times.append(("meta.fti.label.event_time", label.event_time))
    return times


def _label_columns_named(view: FeatureView, meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, column) of every label column the view reads, on-demand inputs aside: the spine of its joins
    (entity, times, join keys), its target, its request features and its evaluation slices."""
    label, entries = view.label, meta.get("features") or []
    named = [*(("meta.fti.label.entity", c) for c in label.entity), ("meta.fti.label.target", label.target),
             *_label_times(view)]
    named += [("meta.fti.label.request_features", c) for c in label.request_features]
    named += [("meta.fti.label.slices", c) for c in label.slices]
    for i, ref in enumerate(view.features):
        key = f"meta.fti.features[{i}].join_keys"
        if "join_keys" not in entries[i]:
            key += f" (by default group {ref.group.name}'s entity)"
        named += [(key, column) for column in ref.join_keys]
    return named


def _on_demand_request_inputs_named(view: FeatureView) -> list[tuple[str, str]]:
    """(key, column) of every on-demand input that is not a joined column: the request (label) must carry it."""
    joined = set(view.joined_columns)
    return [(f"meta.fti.on_demand[{i}].inputs.{parameter}", column) for i, feature in enumerate(view.on_demand)
            for parameter, column in feature.inputs.items() if column not in joined]


def _check_view_columns(view: FeatureView, meta: Mapping[str, Any], nodes: dict[str, Any], where: str) -> None:
    """Every column the view reads from its label model is declared there, and so is every one it reads from
    its inference spine (all but the target and slices), their times timestamptz: training and batch scoring
    join on the same columns, so a spine missing one would fail only at the first scoring run."""
    named, times, inputs = _label_columns_named(view, meta), _label_times(view), _on_demand_request_inputs_named(view)
    models = [(f"label model {view.label.model}", view.label.model, named)]
    if view.inference_spine is not None:
        spine_named = [pair for pair in named if pair[0] not in _LABEL_ONLY_KEYS]
        models.append((f"inference spine model {view.inference_spine.model}", view.inference_spine.model, spine_named))
    for model, name, columns in models:
        declared = _declared_types(_model_node(nodes, name) or {})
        _require_columns(declared, columns, where, model)
        _require_timestamptz(declared, times, where, model)
        _require_columns(declared, inputs, where, model, joined=True)


def _check_on_demand_names(view: FeatureView, nodes: dict[str, Any], where: str) -> None:
    """No on-demand feature is named like a label column: the snapshot would hold two columns of one name."""
    if not view.on_demand:
        return
    label_columns = set(_declared_types(_model_node(nodes, view.label.model) or {}))
    clashing = sorted(label_columns & {f.name for f in view.on_demand})
    if clashing:
        raise CatalogError(f"{where}: on-demand feature names clash with label columns: {clashing}")


def _uniquely_tested_columns(nodes: dict[str, dict[str, Any]]) -> dict[str, list[set[str]]]:
    """model unique_id -> the column sets a `unique` or `unique_combination_of_columns` test proves unique."""
    proven: dict[str, list[set[str]]] = {}
    for node in nodes.values():
        test = node.get("test_metadata") or {}
        kwargs = test.get("kwargs") or {}
        if node.get("resource_type") != "test" or not node.get("attached_node"):
            continue
        if test.get("name") == "unique" and kwargs.get("column_name"):
            columns = {kwargs["column_name"]}
        elif test.get("name") == "unique_combination_of_columns" and kwargs.get("combination_of_columns"):
            columns = set(kwargs["combination_of_columns"])
        else:
            continue
        config = node.get("config") or {}
        # Only a test that fails on any duplicate proves uniqueness: not a warning, not one filtered by
        # `where`, not one that tolerates a few (`error_if`, `fail_calc`). A daily run's window
        # (dbt macros/test_window.sql) reads the window, or the rows whose keys it holds, and either
        # still proves the whole table (README, "Uniqueness still holds for the whole table").
        strict = (str(config.get("severity", "error")).lower() == "error" and not config.get("where")
                  and str(config.get("error_if", "!=0")).replace(" ", "") == "!=0"
                  and str(config.get("fail_calc", "count(*)")).replace(" ", "").lower() == "count(*)")
        if strict:
            proven.setdefault(node["attached_node"], []).append(columns)
    return proven


def catalog_from_manifest(manifest: dict[str, Any], home: Path | None = None) -> Catalog:
    """Build the catalog from a parsed manifest.json; ``home`` (FTI_HOME) resolves external groups' relative
    locations."""
    catalog = Catalog()
    nodes = manifest.get("nodes", {})
    sources = manifest.get("sources", {})
    unique = _uniquely_tested_columns(nodes)
    for node in sources.values():
        meta = _fti_meta(node)
        if meta and "entity" in meta:
            group = _source_group(node, meta, home)
            catalog.groups[(group.name, group.version)] = group
    for node in nodes.values():
        if node.get("resource_type") != "model":
            continue
        meta = _fti_meta(node)
        if meta and "entity" in meta:
            group = _group(node, meta)
            if any(n == group.name and g.external for (n, _), g in catalog.groups.items()):
                raise CatalogError(f"feature group {group.name}: a dbt source table of the same name is an "
                                   f"external group; rename one of them")
            grain, proven = {*group.entity, group.event_time}, unique.get(group.unique_id, [])
            if any(columns <= grain for columns in proven):
                group = dataclasses.replace(group, unique_grain=True)
            if any(columns <= set(group.entity) for columns in proven):
                group = dataclasses.replace(group, unique_entity=True)
            catalog.groups[(group.name, group.version)] = group
    catalog.domains.update(_domains(manifest.get("sources", {})))
    catalog.source_tables = _source_tables(manifest, catalog)
    declared = []
    for exposure in manifest.get("exposures", {}).values():
        meta = _fti_meta(exposure)
        if exposure.get("type") == "ml" and meta:
            declared.append((_view(exposure, meta, catalog, nodes), _view_identity(exposure, meta)[2],
                             exposure["name"]))
    _add_views(catalog, declared)
    catalog.domain_relations.update(_domain_relations(manifest, catalog))
    return catalog


def _add_views(catalog: Catalog, declared: list[tuple[FeatureView, bool, str]]) -> None:
    """Record every declared view version (view, current, exposure name); each view's current one also under
    its name alone: its unsuffixed exposure, else (declared only by versioned exposures) its highest version."""
    for view, _, exposure in declared:
        key = (view.name, view.version)
        if key in catalog.view_versions:
            raise CatalogError(f"feature view {exposure}: version {view.version} of view {view.name!r} is "
                               f"declared twice; give each exposure its own meta.fti.version")
        catalog.view_versions[key] = view
    for view, current, _ in sorted(declared, key=lambda d: (d[1], d[0].version)):
        catalog.views[view.name] = view  # the current one last, else the highest version last


def downstream(nodes: Mapping[str, Mapping[str, Any]], starts: Collection[str]) -> set[str]:
    """Unique ids of every node that depends, directly or through others, on one of ``starts``."""
    children: dict[str, list[str]] = {}
    for unique_id, node in nodes.items():
        for parent in (node.get("depends_on") or {}).get("nodes") or ():
            children.setdefault(parent, []).append(unique_id)
    reached: set[str] = set()
    pending = list(starts)
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in reached:
                reached.add(child)
                pending.append(child)
    return reached


def _source_tables(manifest: Mapping[str, Any], catalog: Catalog) -> tuple[SourceTable, ...]:
    nodes, sources = manifest.get("nodes", {}), manifest.get("sources", {})
    domain_nodes = {name: downstream(nodes, [uid for uid, node in sources.items()
                                               if node.get("source_name") in domain.sources])
                    for name, domain in catalog.domains.items()}
    tables = []
    for uid, node in sources.items():
        reached = downstream(nodes, [uid])
        tables.append(SourceTable(
            node.get("source_name", ""), node.get("name", ""), node.get("schema", ""),
            node.get("identifier") or node.get("name", ""),
            frozenset(name for name, fed in domain_nodes.items() if reached & fed)))
    return tuple(tables)


def _domain_relations(manifest: Mapping[str, Any], catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """Domain -> the published relations (feature groups, labels, inference spines) its sources feed, so a
    domain's pipeline publishes, counts and checks only what its own data changed."""
    published = {g.qualified_relation for g in catalog.groups.values()}
    for view in catalog.all_views():
        published |= {spec.qualified_relation for spec in (view.label, view.inference_spine) if spec is not None}
    nodes, sources = manifest.get("nodes", {}), manifest.get("sources", {})
    relations: dict[str, tuple[str, ...]] = {}
    for name in catalog.domains:
        starts = [uid for uid, source in sources.items()
                  if ((source.get("source_meta") or {}).get("fti") or {}).get("domain") == name]
        reached = (nodes[uid] for uid in downstream(nodes, starts) if uid in nodes)
        found = {f"{n['schema']}.{n.get('alias') or n['name']}" for n in reached if n.get("resource_type") == "model"}
        relations[name] = tuple(sorted(found & published))
    return relations


_NOT_PROJECT = {"target", "dbt_packages", "logs"}


def _changed_since_parsed(settings: Settings, manifest: Path) -> bool:
    """Whether a file or folder of the dbt project is newer than the manifest, which then may not show it (a
    view's training config, say, edited after the last dbt run)."""
    parsed = manifest.stat().st_mtime_ns
    for folder, folders, files in os.walk(settings.dbt_project_dir):
        folders[:] = [f for f in folders if f not in _NOT_PROJECT and not f.startswith(".")]
        for name in (".", *files):
            try:
                if os.stat(os.path.join(folder, name)).st_mtime_ns > parsed:
                    return True
            except FileNotFoundError:  # removed while we looked: the next call sees the folder change
                continue
    return False


def load_catalog(settings: Settings, refresh: bool = False) -> Catalog:
    """The catalog of the project in `settings`; parses the dbt project first if it has no manifest or the
    project changed since the manifest was written."""
    path: Path = settings.manifest_path
    if refresh or not path.exists() or _changed_since_parsed(settings, path):
        from models_ml.definitions.dbt_project import run_dbt

        run = run_dbt(settings, ["parse"])
        if not run.success:
            raise CatalogError(f"dbt could not parse the project in {settings.dbt_project_dir}: "
                               f"{run.exception or 'see ' + str(settings.dbt_log_dir)}")
    return catalog_from_manifest(json.loads(path.read_text()), home=settings.home)
