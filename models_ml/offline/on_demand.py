"""On-demand features offline: appended to the point-in-time join as vectorised UDFs over Arrow chunks, so
a snapshot (or a batch-inference read) stays one Ibis expression executed in the engine."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from models_ml.definitions.on_demand import compute, resolve

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from models_ml.definitions.catalog import FeatureView


@functools.cache
def _udf(reference: str) -> Callable[..., ir.Value]:
    import ibis
    import ibis.expr.datatypes as idt

    fn = resolve(reference)
    types = {"float": idt.float64, "timestamp": idt.Timestamp(timezone="UTC")}

    def run(*columns: pa.Array) -> pa.Array:
        result = compute(fn, dict(zip(fn.parameters, columns)))
        return pa.array(result, type=pa.float64(), mask=np.isnan(result))

    # Ibis reads the UDF's parameters from its signature: give `run` the function's own parameter names.
    run.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in fn.parameters]
    )
    # The engine's function name: from the whole reference, so same-named functions of two modules differ.
    run.__name__ = "fti_on_demand_" + re.sub(r"\W", "_", reference)
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
        fn = resolve(feature.reference)
        args = [table[feature.inputs[p]].cast(types[kind]) for p, kind in fn.parameters.items()]
        columns[feature.name] = _udf(feature.reference)(*args)
    return table.mutate(**columns)
