"""The on-demand function registry: features computed from the request plus stored feature values, by
functions declared once and named by views as ``module:function``.

A feature view declares its on-demand features in its exposure (``meta.fti.on_demand``: a name, the
function as ``module:function`` and the view column bound to each of the function's parameters; see
models/_exposures.yml). A function lives with the project that needs it (the fraud example's in
examples/fraud/on_demand.py), not here: :func:`resolve` imports its module when the catalog reads the view,
and remembers it. The same function then computes the features

* **offline**, inside the training snapshot (and batch inference): models_ml/offline/on_demand.py appends
  them to the point-in-time join as DuckDB vectorised UDFs over Arrow chunks, so the snapshot stays one Ibis
  expression executed in the engine;
* **online**, per request: models_ml/inference/online/on_demand.py runs them on arrays of one row, from the
  request and the stored values the serving app looked up in the online store.

**Why the two agree exactly.** A function sees only float64 numpy arrays, built the same way on both
paths (:func:`as_float64`): numbers as float64, timestamps as float64 microseconds since the epoch (exact:
integers below 2**53, i.e. until the year 2255), a missing value as NaN. Its arithmetic is element-wise
numpy, which gives the same bits for an element whether the array holds one row or a chunk of 2,048 (the
skew test, tests/skew/test_on_demand_skew.py, checks this end to end). A result that is NaN or
infinite is missing: NULL in the snapshot, None online.

**Adding a function**: in any importable module, decorate a vectorised function with
:func:`on_demand_function`, naming the kind (``"float"`` or ``"timestamp"``) of each parameter; views then
name it ``module:function`` and bind its parameters to their columns.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Kind = Literal["float", "timestamp"]
KINDS: tuple[str, ...] = ("float", "timestamp")
EXAMPLE_REFERENCE = "examples.fraud.on_demand:speed_kmh"
_DECLARATION = "on_demand_declaration"  # the attribute the decorator sets on the function it declares
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


class OnDemandError(ValueError):
    """A reference names no usable on-demand function; the message (one line) says why and how to fix it."""


@dataclass(frozen=True)
class OnDemandFunction:
    """A declared function: its parameters (name -> kind, in order) and the vectorised computation."""

    name: str
    parameters: dict[str, Kind]
    compute: Callable[..., np.ndarray]
    description: str
    module: str = ""

    @property
    def reference(self) -> str:
        """``module:function``, how a feature view names it."""
        return f"{self.module}:{self.name}"


# reference -> function, filled by resolve(): a module is imported once, whatever the views that name it.
FUNCTIONS: dict[str, OnDemandFunction] = {}


def on_demand_function(**parameters: Kind) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Declare a function of float64 arrays (one per parameter, all the same length) -> a float64 array,
    with the kind of each parameter; the function itself is returned unchanged, still callable directly."""
    for name, kind in parameters.items():
        if kind not in KINDS:
            raise ValueError(f"parameter {name!r}: kind must be one of {KINDS}, got {kind!r}")

    def declare(compute: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        doc = (compute.__doc__ or "").strip().splitlines()
        setattr(compute, _DECLARATION, OnDemandFunction(compute.__name__, dict(parameters), compute,
                                                        doc[0] if doc else "", compute.__module__))
        return compute

    return declare


def declaration(value: Any) -> OnDemandFunction | None:
    """What :func:`on_demand_function` declared about ``value``; None for anything it did not decorate."""
    declared = getattr(value, _DECLARATION, None)
    return declared if isinstance(declared, OnDemandFunction) else None


def resolve(reference: str) -> OnDemandFunction:
    """The declared function ``module:function`` names, importing the module the first time.

    Raises OnDemandError when the reference is malformed, its module cannot be imported, the module has no
    such attribute, or the attribute is not declared with :func:`on_demand_function`."""
    found = FUNCTIONS.get(reference)
    if found is not None:
        return found
    module_name, _, name = reference.partition(":")
    if not (module_name and name) or ":" in name:
        raise OnDemandError(f"function {reference!r} is not a module:function reference: write it as "
                            f"module:function, e.g. {EXAMPLE_REFERENCE}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(f"{error.name}.")):
            raise OnDemandError(f"function {reference!r}: no module {module_name!r}; fix the module path, or "
                                f"install the package that holds it") from None
        raise OnDemandError(f"function {reference!r}: importing module {module_name!r} failed ({error}); "
                            f"install what it imports") from error
    except ImportError as error:
        raise OnDemandError(f"function {reference!r}: importing module {module_name!r} failed ({error}); "
                            f"fix that import") from error
    value = getattr(module, name, None)
    if value is None:
        declared = sorted(n for n, v in vars(module).items() if declaration(v) is not None)
        raise OnDemandError(f"function {reference!r}: module {module_name} has no {name!r} (its on-demand "
                            f"functions: {', '.join(declared) or 'none'}); fix the name")
    declared = declaration(value)
    if declared is None:
        raise OnDemandError(f"function {reference!r} is not an on-demand function: decorate it with "
                            f"@on_demand_function(<parameter>='float' or 'timestamp', ...) from "
                            f"models_ml.definitions.on_demand")
    FUNCTIONS[reference] = declared
    return declared


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
    """Run one declared function (or its ``module:function`` reference) on columns given per parameter
    (Arrow arrays or Python sequences).

    NaN and infinite results are returned as NaN (missing)."""
    fn = resolve(function) if isinstance(function, str) else function
    arrays = [as_float64(inputs[name], kind) for name, kind in fn.parameters.items()]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"{fn.name}: inputs of different lengths {sorted(lengths)}")
    with np.errstate(all="ignore"):
        result = np.asarray(fn.compute(*arrays), dtype=np.float64)
    return np.where(np.isfinite(result), result, np.nan)
