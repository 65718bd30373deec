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
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:

    pass

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
