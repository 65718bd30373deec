"""On-demand features online, and the model's input row of a request.

On-demand features are computed one request at a time (or a few), from the request and the values looked
up in the online store, with the same declared functions the snapshot ran (see
:mod:`models_ml.definitions.on_demand` for why the two agree bit for bit). :func:`feature_rows` then lays
out the row the model scores, which the skew tests compare with the snapshot's row."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models_ml.definitions.catalog import FeatureView, per_view
from models_ml.definitions.on_demand import Kind, _python_floats, resolve


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
                            f"look up every column of store.online_lookups(view)")
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
        kinds = resolve(feature.reference).parameters
        for parameter, column in feature.inputs.items():
            kind = kinds[parameter]
            inputs.setdefault((column, kind), _OnlineInput(column, kind, column in joined, feature.name))
        by_function.setdefault(feature.reference, []).append(feature.name)
    position = {key: i for i, key in enumerate(inputs)}
    features = {feature.name: feature for feature in view.on_demand}
    calls = []
    for function, names in by_function.items():
        fn = resolve(function)
        calls.append(_OnlineCall(fn.compute, tuple(names), tuple(
            tuple(position[(features[name].inputs[parameter], kind)] for name in names)
            for parameter, kind in fn.parameters.items()
        )))
    return _OnlinePlan(view.name, tuple(features), tuple(inputs.values()), tuple(calls))


def compute_many(view: FeatureView, requests: Sequence[Mapping[str, Any]],
                 stored_features: Sequence[Mapping[str, Any]]) -> list[dict[str, float | None]]:
    """The view's on-demand features for each request: ``{name: value}``, None when missing (one numpy call
    per function for all requests, not one per request).

    A request holds its fields by label column name (for card_fraud: amount, latitude, longitude,
    transaction_at as an aware datetime or ISO string); its ``stored_features`` the values looked up in the
    online store by output name (``prefix + column``, see
    :func:`models_ml.inference.online.store.online_lookups`), None for a missing entity or value; timestamps
    as aware datetimes (or microseconds since the epoch).
    """
    if len(requests) != len(stored_features):
        raise ValueError("give one stored_features mapping per request")
    return _online_plan(view).compute(requests, stored_features)


@per_view
def _row_columns(view: FeatureView) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The request features and the stored model features of the view's rows, in its column order."""
    stored = tuple(ref.output_name(f) for ref in view.features for f in ref.features)
    return tuple(view.label.request_features), stored


def feature_rows(view: FeatureView, requests: Sequence[Mapping[str, Any]],
                 stored_features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The model input of each request, in ``view.feature_columns`` order: request features, stored
    features (None when missing), on-demand features. What the offline snapshot row holds for the same
    request: the service scores these rows, and the skew tests compare them with the snapshot's, so the
    two paths assemble a row in one place."""
    request_names, stored_names = _row_columns(view)
    rows = [{**{name: request.get(name) for name in request_names},
             **{name: stored.get(name) for name in stored_names}}
            for request, stored in zip(requests, stored_features)]
    if view.on_demand:
        for row, computed in zip(rows, compute_many(view, requests, stored_features)):
            row.update(computed)
    return rows

