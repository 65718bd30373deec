"""The online store: the latest feature values per entity of every ``online: true`` feature group version.

One interface (:class:`OnlineStore`), one module per implementation under ``stores/``, chosen by name from
``Settings.online_store``: ``sqlite`` (embedded, the default: one file under ``FTI_HOME/online/``, no
server) or ``redis`` (a Redis server, for deployments with several service processes or machines). A
name maps to a ``module:Class`` path in :data:`STORES` that is imported on first use, so this module
imports no store (the stores import it, never the reverse). A store's options (its class's keywords)
are ``Settings.online_stores[name]``, handed over by its :meth:`OnlineStore.from_settings`. Adding a store
is one module, one line in :data:`STORES` and one entry in the store contract tests' parameter list
(``EMPTY_STORES`` in ``tests/inference/online/test_store.py``).

**What a refresh does** (:meth:`OnlineStore.apply`, fed by :mod:`models_ml.inference.online.materialize`): for each
group version, the candidate rows are the offline table's rows loaded since the store's *watermark* (the
greatest created/loaded time already materialized; rows *at* the watermark are read again, so a batch
loaded with the same timestamp in two parts is never half-missed), reduced to one row per entity with the
point-in-time join's tie rule (latest event time, then latest created time with NULL losing, then the
largest feature values). A candidate replaces the stored row only when its ``(event time, created time)``
is not older than the stored one: a late-arriving older event never overwrites a newer one, and applying
the same refresh twice changes nothing (idempotent). The freshness record of each group (latest event
time, watermark, when materialized, entities, rows written) is updated in the same atomic step.

**What a reader sees**: a refresh is atomic for readers. SQLite: one write transaction, and a reader's
lookups of all groups run inside one read transaction (WAL mode: a reader reads the last committed
snapshot and is never blocked by the writer). Redis: one ``MULTI``/``EXEC`` (each entity's hash is rewritten
by a Lua script that checks event/created time), and a reader's lookups are one ``MULTI``/``EXEC`` pipeline;
see the Redis module for the chunking of very large refreshes.

**TTL at read time**: a stored row whose event time is older than ``as_of - ttl`` (``as_of`` = the
request time) is returned as missing, the same bound as the point-in-time join (``event_time >= t - ttl``
is valid). The store holds only the latest row, so a request dated *before* the stored event time still
gets that latest row (the online path answers "now"; replaying history exactly is the batch path's job);
its age is then negative, which the service reports as is.

**Entity keys** are compared by their text form: the key columns' values, ``str()``-ed and joined with
``\\x1f`` (so an integer id in the warehouse and in a request give the same key).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import functools
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from models_ml.definitions.catalog import FeatureGroup, FeatureView, per_view

if TYPE_CHECKING:
    from models_ml.core.settings import Settings

# name -> "module:Class"; imported on first use (see the module docstring)
STORES: dict[str, str] = {
    "sqlite": "models_ml.inference.online.stores.sqlite:SqliteStore",
    "redis": "models_ml.inference.online.stores.redis:RedisStore",
}

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
KEY_SEPARATOR = "\x1f"
# A NULL created time sorts before any real one (the point-in-time join's rule); stored as this number.
NULL_CREATED_US = -(2**62)


class OnlineStoreError(RuntimeError):
    """The online store cannot answer (not materialized yet, unreachable, or asked for an unknown group)."""


def to_us(value: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive datetimes are refused, not guessed)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: online store times are UTC-aware")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> dt.datetime | None:
    if value is None or value == NULL_CREATED_US:
        return None
    return _EPOCH + dt.timedelta(microseconds=int(value))


def latest_us(*values: int | None) -> int | None:
    """The greatest of some epoch-microsecond times, None when none is known: a watermark or a latest
    event time never moves backwards."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def storage_array(column: pa.ChunkedArray | pa.Array, kind: str) -> pa.Array:
    """A column as the stores keep it: timestamps as epoch microseconds (int64), decimals as float64,
    dates as ISO text, anything nested as JSON text; NULL stays NULL."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if kind == "timestamp":
        return pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
    if kind == "float":
        return pc.cast(column, pa.float64())
    if kind == "int":
        return pc.cast(column, pa.int64())
    if kind == "date":
        return pc.cast(column, pa.string())
    if kind == "json":
        return pa.array([None if v is None else json.dumps(v, default=str, sort_keys=True)
                         for v in column.to_pylist()], pa.string())
    return column


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "int": int,
    "str": _text,
    "bool": lambda value: bool(int(value)),
    "timestamp": lambda value: from_us(int(value)),
    "date": lambda value: dt.date.fromisoformat(_text(value)),
}


def decoder(kind: str) -> Callable[[Any], Any]:
    """:func:`decode` of one kind, for non-NULL values (resolved once per column, not per value)."""
    return _DECODERS.get(kind, json.loads)


def decode(kind: str, value: Any) -> Any:
    """A stored value (SQLite's native value or Redis' text) back to the Python value a request would hold."""
    return None if value is None else decoder(kind)(value)


def entity_key(values: Sequence[Any]) -> str | None:
    """The store key of one entity; None when a key column is NULL (such an entity never matches)."""
    if len(values) == 1:  # most entities: one key column
        return None if values[0] is None else str(values[0])
    if any(v is None for v in values):
        return None
    return KEY_SEPARATOR.join(str(v) for v in values)


def entity_keys(table: pa.Table, entity: Sequence[str]) -> pa.Array:
    """:func:`entity_key` of every row of an Arrow table, computed in Arrow."""
    parts = [pc.cast(table[c], pa.string()) for c in entity]
    if len(parts) == 1:
        return parts[0].combine_chunks()
    return pc.binary_join_element_wise(*parts, KEY_SEPARATOR).combine_chunks()


def group_id(name: str, version: int | None) -> str:
    """How a group version is named in a store: ``fg_card__activity:v1`` (``:v0`` for an unversioned model)."""
    return f"{name}:v{version if version is not None else 0}"


@dataclass(frozen=True)
class GroupSchema:
    """What a store must know of a group version: its entity, its features with their storage kinds, its TTL."""

    name: str
    version: int | None
    entity: tuple[str, ...]
    features: tuple[tuple[str, str], ...]  # (column, kind)
    ttl_seconds: float | None

    @property
    def id(self) -> str:
        return group_id(self.name, self.version)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    def kinds(self) -> dict[str, str]:
        return dict(self.features)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> GroupSchema:
        data = json.loads(text)
        return cls(name=data["name"], version=data["version"], entity=tuple(data["entity"]),
                   features=tuple((n, k) for n, k in data["features"]), ttl_seconds=data["ttl_seconds"])


@dataclass(frozen=True)
class StoredRow:
    """One entity's latest feature values (only the columns asked for) with its event and created time."""

    event_at: dt.datetime
    created_at: dt.datetime | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Freshness:
    """How fresh one group version is in the store."""

    group: str
    latest_event_at: dt.datetime | None  # greatest event time materialized
    watermark: dt.datetime | None  # greatest created (loaded) time materialized
    materialized_at: dt.datetime | None  # when the last refresh committed
    entities: int  # entities held
    rows_written: int  # entities written by the last refresh

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("latest_event_at", "watermark", "materialized_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


@dataclass
class GroupRefresh:
    """One group version's candidate rows for a refresh, already one per entity, in storage form.

    ``rows`` has the columns ``entity_key`` (string), ``event_us`` and ``created_us`` (int64), the entity
    columns (text), then the features (:func:`storage_array` form). ``watermark_us`` / ``latest_event_us`` are
    the greatest created / event time among the source rows read (None when none were read).
    """

    schema: GroupSchema
    rows: pa.Table
    watermark_us: int | None
    latest_event_us: int | None
    source_rows: int = 0


@dataclass(frozen=True)
class RowsRequest:
    """A read of some entities of one group version: only ``features`` (all when None) come back."""

    group: str
    keys: Sequence[str | None]
    features: Sequence[str] | None = None


@dataclass(frozen=True)
class GroupMatch:
    """The row a lookup used for one feature selection of a view (``found`` False: missing or past TTL)."""

    group: str
    found: bool
    event_at: dt.datetime | None
    age_seconds: float | None


@dataclass
class ViewLookup:
    """Per request: the view's stored features by output name (None when missing), and what was matched."""

    features: list[dict[str, Any]]
    matches: list[list[GroupMatch]]


def expired(age_seconds: float, ttl_seconds: float | None) -> bool:
    """The TTL rule: a row exactly ``ttl`` old is still valid (``event_time >= t - ttl``)."""
    return ttl_seconds is not None and age_seconds > ttl_seconds


@dataclass(frozen=True)
class OnlineLookup:
    """What a request of a view reads for one of its feature selections: the latest row of ``group`` for
    the entity whose key columns the request names (``keys``: request field -> group column), and its
    ``columns`` (model features, then on-demand inputs) under the names ``prefix + column``, which are the
    names the on-demand functions and the model expect. Resolved once per view (:func:`online_lookups`);
    the derived attributes are computed on first use and kept."""

    group: FeatureGroup
    keys: dict[str, str]
    columns: tuple[str, ...]
    prefix: str

    @functools.cached_property
    def output_names(self) -> dict[str, str]:
        return {column: f"{self.prefix}{column}" for column in self.columns}

    @functools.cached_property
    def group_id(self) -> str:
        return group_id(self.group.name, self.group.version)

    @functools.cached_property
    def key_fields(self) -> tuple[str, ...]:
        """The request fields holding the entity key, in the group's entity order."""
        field_of = {column: field for field, column in self.keys.items()}
        return tuple(field_of[c] for c in self.group.entity)

    @functools.cached_property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.output_names.values())

    @functools.cached_property
    def ttl_seconds(self) -> float | None:
        return self.group.ttl.total_seconds() if self.group.ttl is not None else None

    @functools.cached_property
    def missing(self) -> dict[str, None]:
        """The features of a request with no row within TTL (copied into each request's, never changed)."""
        return dict.fromkeys(self.outputs)


@per_view
def online_lookups(view: FeatureView) -> tuple[OnlineLookup, ...]:
    """Every lookup a request of ``view`` needs: model features and on-demand inputs of each group."""
    return tuple(OnlineLookup(ref.group, dict(ref.join_keys), ref.columns, ref.prefix) for ref in view.features)


class OnlineStore(abc.ABC):
    """Latest feature values per entity; see the module docstring for the refresh and read rules."""

    #: the store's name in :data:`STORES`
    name: ClassVar[str]
    #: exception types of this store that a retry can fix (an unreachable server)
    transient: ClassVar[tuple[type[BaseException], ...]] = ()

    # -- implemented by each store --------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings, options: Mapping[str, Any], *, create: bool = True) -> OnlineStore:
        """The store ``settings`` describe, with its ``options`` (``Settings.online_stores[name]``).
        ``create=False`` (the service): create nothing; the store reports not ready until a
        materialization has written it."""

    @abc.abstractmethod
    def apply(self, refreshes: Sequence[GroupRefresh], materialized_at: dt.datetime) -> dict[str, int]:
        """Merge every refresh atomically (see module docstring); returns rows written per group id."""

    @abc.abstractmethod
    def read_rows(self, requests: Sequence[RowsRequest]) -> list[list[StoredRow | None]]:
        """The stored rows of each request's keys (None when absent), all from one consistent snapshot.
        No TTL applied."""

    @abc.abstractmethod
    def freshness(self) -> dict[str, Freshness]:
        """Freshness of every group version held, by group id."""

    @abc.abstractmethod
    def schemas(self) -> dict[str, GroupSchema]:
        """The schema of every group version held, by group id."""

    @abc.abstractmethod
    def is_ready(self) -> bool:
        """The store can be read (a SQLite file that exists; a Redis server that answers)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared ----------------------------------------------------------------------------------------

    def lookup(self, view: FeatureView, requests: Sequence[Mapping[str, Any]],
               as_of: Sequence[dt.datetime]) -> ViewLookup:
        """The stored features of a feature view for each request (a mapping holding the view's join keys
        under their spine names), TTL applied relative to each request's ``as_of`` (the :func:`expired`
        rule). One snapshot read. Features come back under their output names (``prefix + column``),
        on-demand inputs included."""
        plan = online_lookups(view)
        found = self.read_rows([
            RowsRequest(read.group_id, [entity_key([request.get(c) for c in read.key_fields]) for request in requests],
                        read.columns)
            for read in plan
        ])
        features: list[dict[str, Any]] = [{} for _ in requests]
        matches: list[list[GroupMatch]] = [[] for _ in requests]
        for read, rows in zip(plan, found):
            ttl = read.ttl_seconds
            for i, row in enumerate(rows):
                age = None if row is None else (as_of[i] - row.event_at).total_seconds()
                if age is None or expired(age, ttl):
                    features[i].update(read.missing)
                    matches[i].append(GroupMatch(read.group_id, False, None, None))
                else:
                    values, out = row.values, features[i]
                    for column, output in zip(read.columns, read.outputs):
                        out[output] = values.get(column)
                    matches[i].append(GroupMatch(read.group_id, True, row.event_at, age))
        return ViewLookup(features, matches)


def store_class(name: str) -> type[OnlineStore]:
    """The store registered under ``name`` in :data:`STORES`."""
    path = STORES.get(name)
    if path is None:
        raise OnlineStoreError(f"unknown online store {name!r}: choose one of {sorted(STORES)} (FTI_ONLINE_STORE)")
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def open_online_store(settings: Settings, name: str | None = None, *, create: bool = True) -> OnlineStore:
    """The online store ``name`` (default ``settings.online_store``) with its options from the settings."""
    name = name or settings.online_store
    return store_class(name).from_settings(settings, settings.online_stores.get(name, {}), create=create)
