"""The model's input row for online requests, without pandas: one float64 matrix straight from Python values.

:func:`models_ml.train.prepare_features` is the one encoder of training and batch inference; for a single
request its Arrow -> pandas -> LightGBM path costs about a millisecond, most of the online budget. This
builds the very matrix LightGBM derives from that frame (``lightgbm.basic._data_from_pandas``): numeric
features as float64 (NULL -> NaN, booleans 0/1), categorical features as the position of the value in the
spec's categories (NULL or unseen -> NaN). ``tests/online/test_encode.py`` proves the scores are identical
to :meth:`models_ml.train.Model.predict` on the same rows, so the two paths cannot skew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models_ml.train import Model, ModelSpec

NAN = math.nan


def _category_text(value: Any) -> str:
    """The text Arrow's cast gives a value (what prepare_features compares with the categories)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class Encoder:
    """Encodes request rows (mappings of feature name -> Python value) for one model spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.features = list(spec.features)
        self._plan: list[tuple[str, dict[str, float] | None]] = [
            (name, {c: float(i) for i, c in enumerate(spec.categories[name])} if name in spec.categories else None)
            for name in self.features
        ]

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = np.empty((len(rows), len(self._plan)), dtype=np.float64)
        for i, row in enumerate(rows):
            line = out[i]
            for j, (name, codes) in enumerate(self._plan):
                value = row.get(name)
                if value is None:
                    line[j] = NAN
                elif codes is not None:
                    line[j] = codes.get(_category_text(value), NAN)
                elif isinstance(value, (int, float)):  # bool is an int: True -> 1.0
                    line[j] = float(value)
                else:
                    raise ValueError(f"feature {name!r} got {type(value).__name__} {value!r}; the model needs a number")
        return out


def predict(model: Model, encoder: Encoder, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Positive-class probabilities of ``rows`` (one thread: a request's few rows gain nothing from more)."""
    if not rows:
        return np.empty(0, dtype=np.float64)
    return model.booster.predict(encoder.matrix(rows), num_iteration=model.best_iteration or None, num_threads=1)
