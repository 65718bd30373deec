"""On-demand features: computed from the request itself plus stored feature values, defined once.

A feature view declares its on-demand features in its exposure (``meta.fti.on_demand``: a name, a function
of this module and the view column bound to each of the function's parameters; see models/_exposures.yml).
The same function then computes them

* **offline**, inside the training snapshot (and batch inference): :func:`add_on_demand` appends them to the
  point-in-time join as DuckDB vectorised UDFs over Arrow chunks, so the snapshot stays one Ibis expression
  executed in the engine;
* **online**, per request: :func:`compute_online` (the serving app calls it with the request and the stored
  values it looked up in the online store) runs it on arrays of one row.

**Why the two agree exactly.** A function sees only float64 numpy arrays, built the same way on both
paths (:func:`as_float64`): numbers as float64, timestamps as float64 microseconds since the epoch (exact:
integers below 2**53, i.e. until the year 2255), a missing value as NaN. Its arithmetic is element-wise
numpy, which gives the same bits for an element whether the array holds one row or a chunk of 2,048 (the
skew test, tests/models_ml/test_on_demand_skew.py, checks this end to end). A result that is NaN or
infinite is missing: NULL in the snapshot, None online.

**Adding a function**: decorate a vectorised function with :func:`on_demand_function`, naming the kind
(``"float"`` or ``"timestamp"``) of each parameter; views then bind its parameters to their columns.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.catalog import per_view

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from models_ml.catalog import FeatureGroup, FeatureView

Kind = Literal["float", "timestamp"]
KINDS: tuple[str, ...] = ("float", "timestamp")
EARTH_RADIUS_KM = 6371.0088
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class OnDemandFunction:
    """A registered function: its parameters (name -> kind, in order) and the vectorised computation."""

    name: str
    parameters: dict[str, Kind]
    compute: Callable[..., np.ndarray]
    description: str


FUNCTIONS: dict[str, OnDemandFunction] = {}


def on_demand_function(**parameters: Kind) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register a function of float64 arrays (one per parameter, all the same length) -> a float64 array."""
    for name, kind in parameters.items():
        if kind not in KINDS:
            raise ValueError(f"parameter {name!r}: kind must be one of {KINDS}, got {kind!r}")

    def register(compute: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if compute.__name__ in FUNCTIONS:
            raise ValueError(f"on-demand function {compute.__name__!r} is already registered")
        doc = (compute.__doc__ or "").strip().splitlines()
        FUNCTIONS[compute.__name__] = OnDemandFunction(compute.__name__, dict(parameters), compute,
                                                       doc[0] if doc else "")
        return compute

    return register


# --------------------------------------------------------------------------------------------------
# The functions


@on_demand_function(latitude="float", longitude="float", other_latitude="float", other_longitude="float")
def haversine_km(latitude: np.ndarray, longitude: np.ndarray, other_latitude: np.ndarray,
                 other_longitude: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between two points (mean Earth radius)."""
    lat1, lon1, lat2, lon2 = (np.radians(a) for a in (latitude, longitude, other_latitude, other_longitude))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@on_demand_function(at="timestamp", since="timestamp")
def seconds_between(at: np.ndarray, since: np.ndarray) -> np.ndarray:
    """Seconds from ``since`` to ``at``."""
    return (at - since) / 1e6


@on_demand_function(latitude="float", longitude="float", at="timestamp",
                    other_latitude="float", other_longitude="float", since="timestamp")
def speed_kmh(latitude: np.ndarray, longitude: np.ndarray, at: np.ndarray, other_latitude: np.ndarray,
              other_longitude: np.ndarray, since: np.ndarray) -> np.ndarray:
    """Speed in km/h needed to travel from the other point at ``since`` to this one at ``at`` (at least a
    second of travel, so two purchases in the same second far apart are fast, not infinite)."""
    km = haversine_km(latitude, longitude, other_latitude, other_longitude)
    hours = np.maximum(seconds_between(at, since), 1.0) / 3600.0
    return km / hours


@on_demand_function(numerator="float", denominator="float")
def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator; missing when the denominator is zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / denominator, np.nan)


# --------------------------------------------------------------------------------------------------
# Inputs as float64 arrays, the same way offline and online


def _scalar_micros(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, np.datetime64):
        return math.nan if np.isnat(value) else float(value.astype("datetime64[us]").astype(np.int64))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: on-demand inputs are UTC-aware instants")
        return float((value - _EPOCH) // _MICROSECOND)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # already microseconds since the epoch (how the online stores keep timestamps)
    raise TypeError(f"cannot read {value!r} as a timestamp")


def _scalar_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (str, bytes)):
        raise TypeError(f"cannot read {value!r} as a number")
    return float(value)


def as_float64(values: Any, kind: Kind) -> np.ndarray:
    """An input column as a contiguous float64 array: numbers as they are, timestamps as microseconds since
    the epoch, missing values as NaN. Takes Arrow arrays (offline) or a sequence of Python values (online)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if kind == "timestamp":
            if not pa.types.is_timestamp(values.type):
                raise TypeError(f"expected a timestamp column, got {values.type}")
            values = pc.cast(pc.cast(values, pa.timestamp("us", tz=values.type.tz)), pa.int64())
        array = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    else:
        array = np.array(_python_floats(values, kind), dtype=np.float64)
    return np.ascontiguousarray(array, dtype=np.float64)


def _python_floats(values: Sequence[Any], kind: Kind) -> list[float]:
    """The Python values of a column as the floats :func:`as_float64` holds."""
    read = _scalar_micros if kind == "timestamp" else _scalar_float
    return [read(v) for v in values]


def compute(function: str | OnDemandFunction, inputs: Mapping[str, Any]) -> np.ndarray:
    """Run one registered function on columns given per parameter (Arrow arrays or Python sequences).

    NaN and infinite results are returned as NaN (missing)."""
    fn = FUNCTIONS[function] if isinstance(function, str) else function
    arrays = [as_float64(inputs[name], kind) for name, kind in fn.parameters.items()]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"{fn.name}: inputs of different lengths {sorted(lengths)}")
    with np.errstate(all="ignore"):
        result = np.asarray(fn.compute(*arrays), dtype=np.float64)
    return np.where(np.isfinite(result), result, np.nan)


# --------------------------------------------------------------------------------------------------
# Offline: appended to the point-in-time join as vectorised UDFs


@functools.cache
def _udf(function: str) -> Callable[..., ir.Value]:
    import ibis
    import ibis.expr.datatypes as idt

    fn = FUNCTIONS[function]
    types = {"float": idt.float64, "timestamp": idt.Timestamp(timezone="UTC")}

    def run(*columns: pa.Array) -> pa.Array:
        result = compute(fn, dict(zip(fn.parameters, columns)))
        return pa.array(result, type=pa.float64(), mask=np.isnan(result))

    # Ibis reads the UDF's parameters from its signature: give `run` the function's own parameter names.
    run.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in fn.parameters]
    )
    run.__name__ = f"fti_on_demand_{function}"
    signature = (tuple(types[kind] for kind in fn.parameters.values()), idt.float64)
    return ibis.udf.scalar.pyarrow(run, name=run.__name__, signature=signature)


def add_on_demand(table: ir.Table, view: FeatureView) -> ir.Table:
    """``table`` (the point-in-time join's output, or anything with the view's columns) with the view's
    on-demand features appended; unchanged when the view declares none."""
    if not view.on_demand:
        return table
    import ibis.expr.datatypes as idt

    types = {"float": idt.float64, "timestamp": idt.Timestamp(timezone="UTC")}
    columns = {}
    for feature in view.on_demand:
        fn = FUNCTIONS[feature.function]
        args = [table[feature.inputs[p]].cast(types[kind]) for p, kind in fn.parameters.items()]
        columns[feature.name] = _udf(feature.function)(*args)
    return table.mutate(**columns)


# --------------------------------------------------------------------------------------------------
# Online: one request at a time (or a few), from the request and the looked-up stored values


@dataclass(frozen=True)
class OnlineLookup:
    """What the serving side fetches from the online store for one feature selection of a view: the
    latest row of ``group`` for the entity whose key columns (``keys``: request field -> group column) the
    request names, and its ``columns`` under the names ``prefix + column``, which are the names
    :func:`compute_online` and the model expect in ``stored_features``."""

    group: FeatureGroup
    keys: dict[str, str]
    columns: tuple[str, ...]
    prefix: str

    @property
    def output_names(self) -> dict[str, str]:
        return {column: f"{self.prefix}{column}" for column in self.columns}


def online_lookups(view: FeatureView) -> list[OnlineLookup]:
    """Every lookup a request of ``view`` needs: model features and on-demand inputs of each group."""
    return [OnlineLookup(ref.group, dict(ref.join_keys), ref.columns, ref.prefix) for ref in view.features]


def _resolve_view(view: FeatureView | str) -> FeatureView:
    if isinstance(view, str):
        from models_ml.catalog import load_catalog
        from models_ml.settings import load_settings

        return load_catalog(load_settings()).view(view)
    return view


@dataclass(frozen=True)
class _OnlineInput:
    """A column the view's on-demand features read: read once per request however many features use it."""

    column: str
    kind: Kind
    stored: bool  # a looked-up (joined) column, else a request field
    feature: str  # the first feature that reads it (named when it is missing)


@dataclass(frozen=True)
class _OnlineCall:
    """One numpy call of a function for every feature of the view that uses it, their inputs laid end to end:
    the arithmetic is element-wise, so no element's bits depend on the others, and a request pays the
    per-call overhead of the (tiny) arrays once per function instead of once per feature."""

    compute: Callable[..., np.ndarray]
    features: tuple[str, ...]
    inputs: tuple[tuple[int, ...], ...]  # per parameter: each feature's input (a position in the plan's inputs)

    def run(self, floats: list[list[float]], out: list[dict[str, float | None]]) -> None:
        arrays = [np.array([x for i in parameter for x in floats[i]], dtype=np.float64) for parameter in self.inputs]
        results = np.asarray(self.compute(*arrays), dtype=np.float64).tolist()
        n = len(out)
        for j, name in enumerate(self.features):
            for row, value in zip(out, results[j * n:(j + 1) * n]):
                row[name] = value if math.isfinite(value) else None


@dataclass(frozen=True)
class _OnlinePlan:
    """A view's on-demand features resolved once (functions, input columns and where they come from), so a
    request pays only for reading its values and the numpy arithmetic."""

    view: str
    features: tuple[str, ...]  # in the view's order
    inputs: tuple[_OnlineInput, ...]
    calls: tuple[_OnlineCall, ...]

    def compute(self, requests: Sequence[Mapping[str, Any]],
                stored_features: Sequence[Mapping[str, Any]]) -> list[dict[str, float | None]]:
        floats = [_python_floats(self._values(source, requests, stored_features), source.kind)
                  for source in self.inputs]
        out: list[dict[str, float | None]] = [dict.fromkeys(self.features) for _ in requests]
        with np.errstate(all="ignore"):  # once for all features: NaN and infinity become None
            for call in self.calls:
                call.run(floats, out)
        return out

    def _values(self, source: _OnlineInput, requests: Sequence[Mapping[str, Any]],
                stored_features: Sequence[Mapping[str, Any]]) -> list[Any]:
        column = source.column
        try:
            if source.stored:
                return [stored[column] for stored in stored_features]
            return [request[column] for request in requests]
        except KeyError:
            raise self._missing(source, requests, stored_features) from None

    def _missing(self, source: _OnlineInput, requests: Sequence[Mapping[str, Any]],
                 stored_features: Sequence[Mapping[str, Any]]) -> KeyError:
        if source.stored:  # a lookup that skipped the column would silently skew: say so instead
            absent = next(i for i, stored in enumerate(stored_features) if source.column not in stored)
            return KeyError(f"on-demand feature {source.feature} of view {self.view} needs stored column "
                            f"{source.column!r} (None when missing), which stored_features #{absent} lacks; "
                            f"look up every column of online_lookups(view)")
        absent = next(i for i, request in enumerate(requests) if source.column not in request)
        return KeyError(f"on-demand feature {source.feature} of view {self.view} needs request field "
                        f"{source.column!r}, which request #{absent} lacks")


@per_view
def _online_plan(view: FeatureView) -> _OnlinePlan:
    """The view's features grouped by function; their inputs once each, in the order the features read them
    (so a missing input is reported for the same feature as when each feature checked its own)."""
    joined = set(view.joined_columns)
    inputs: dict[tuple[str, str], _OnlineInput] = {}
    by_function: dict[str, list[str]] = {}
    for feature in view.on_demand:
        kinds = FUNCTIONS[feature.function].parameters
        for parameter, column in feature.inputs.items():
            kind = kinds[parameter]
            inputs.setdefault((column, kind), _OnlineInput(column, kind, column in joined, feature.name))
        by_function.setdefault(feature.function, []).append(feature.name)
    position = {key: i for i, key in enumerate(inputs)}
    features = {feature.name: feature for feature in view.on_demand}
    calls = []
    for function, names in by_function.items():
        fn = FUNCTIONS[function]
        calls.append(_OnlineCall(fn.compute, tuple(names), tuple(
            tuple(position[(features[name].inputs[parameter], kind)] for name in names)
            for parameter, kind in fn.parameters.items()
        )))
    return _OnlinePlan(view.name, tuple(features), tuple(inputs.values()), tuple(calls))


def compute_many(view: FeatureView | str, requests: Sequence[Mapping[str, Any]],
                 stored_features: Sequence[Mapping[str, Any]]) -> list[dict[str, float | None]]:
    """:func:`compute_online` for several requests at once (one numpy call per function, not per request)."""
    if len(requests) != len(stored_features):
        raise ValueError("give one stored_features mapping per request")
    return _online_plan(_resolve_view(view)).compute(requests, stored_features)


def compute_online(view: FeatureView | str, request: Mapping[str, Any],
                   stored_features: Mapping[str, Any]) -> dict[str, float | None]:
    """The view's on-demand features for one request: ``{name: value}``, None when missing.

    ``request`` holds the request's fields by label column name (for card_fraud: amount, latitude, longitude,
    transaction_at as an aware datetime or ISO string); ``stored_features`` the values looked up in the
    online store by output name (``prefix + column``, see :func:`online_lookups`), None for a missing
    entity or value; timestamps as aware datetimes (or microseconds since the epoch). ``view`` is the
    catalog's FeatureView (or its name, which loads the catalog: slower, for scripts).
    """
    return compute_many(view, [request], [stored_features])[0]


def feature_vector(view: FeatureView | str, request: Mapping[str, Any],
                   stored_features: Mapping[str, Any]) -> dict[str, Any]:
    """The full model input of one request, in ``view.feature_columns`` order: request features, stored
    features, on-demand features. What the offline snapshot row holds for the same transaction."""
    view = _resolve_view(view)
    values: dict[str, Any] = {name: request.get(name) for name in view.label.request_features}
    for ref in view.features:
        for feature in ref.features:
            values[ref.output_name(feature)] = stored_features.get(ref.output_name(feature))
    values.update(compute_online(view, request, stored_features))
    return {name: values[name] for name in view.feature_columns}
