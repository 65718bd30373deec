"""The model's input row for online requests, without pandas: one float64 matrix straight from Python values.

:func:`models_ml.training.train.prepare_features` is the one encoder of training and batch inference; for a single
request its Arrow -> pandas -> LightGBM path would be the largest cost of the whole request. This
builds the very matrix LightGBM derives from that frame (``lightgbm.basic._data_from_pandas``): numeric
features as float64 (NULL -> NaN, booleans 0/1), categorical features as the position of the value in the
spec's categories (NULL or unseen -> NaN). ``tests/inference/online/test_encode.py`` proves the scores are identical
to :meth:`models_ml.training.train.Model.predict` on the same rows, so the two paths cannot skew.

:class:`Scorer` then scores a request's few rows through LightGBM's single-row C entry point, set up once per
model: ``booster.predict`` re-creates its predictor and parses its parameters on every call, which costs
more than walking the trees. Larger batches go through ``booster.predict``. Both walk the same trees on the same
float64 values, so the scores are the same bits (the test covers both).
"""

from __future__ import annotations

import ctypes
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from lightgbm.basic import (
    _C_API_DTYPE_FLOAT64,
    _C_API_PREDICT_NORMAL,
    _LIB,
    _c_str,
    _safe_call,
)

from models_ml.training.train import Model, ModelSpec

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


PREDICT_PARAMETERS = "num_threads=1"  # a request's few rows gain nothing from more threads
FAST_PATH_MAX_ROWS = 16  # the fast path wins for a few dozen rows at most; 16 leaves a margin


def _num_iteration(model: Model) -> int:
    """The iteration limit ``booster.predict(num_iteration=model.best_iteration or None)`` resolves to."""
    return model.best_iteration or model.booster.best_iteration


class SingleRowPredictor:
    """LightGBM's single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``) for one model.

    Its C object (a ``FastConfig``) holds buffers indexed by OpenMP thread, which every Python thread shares
    as thread 0, so calls are serialized by a lock. It is freed when this object is collected, and keeps the
    booster alive until then (it points into it)."""

    def __init__(self, model: Model, num_features: int) -> None:
        booster, num_iteration = model.booster, ctypes.c_int(_num_iteration(model))
        per_row = ctypes.c_int64(0)
        _safe_call(_LIB.LGBM_BoosterCalcNumPredict(booster._handle, ctypes.c_int(1),
                                                    ctypes.c_int(_C_API_PREDICT_NORMAL), ctypes.c_int(0),
                                                    num_iteration, ctypes.byref(per_row)))
        if per_row.value != 1:  # a multi-class model: the fast path writes one value per row, no more
            raise ValueError(f"the model gives {per_row.value} values per row, not one probability")
        self._ncol = num_features
        handle = ctypes.c_void_p()
        _safe_call(_LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(_C_API_PREDICT_NORMAL), ctypes.c_int(0), num_iteration,
            ctypes.c_int(_C_API_DTYPE_FLOAT64), ctypes.c_int32(num_features), _c_str(PREDICT_PARAMETERS),
            ctypes.byref(handle),
        ))
        self._handle = handle.value
        weakref.finalize(self, _free_fast_config, handle.value, booster)
        self._lock = threading.Lock()
        self._out_len = ctypes.byref(ctypes.c_int64(0))  # the count written (checked once above)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Scores of a C-contiguous float64 matrix of ``num_features`` columns, one fast call per row."""
        if matrix.dtype != np.float64 or matrix.ndim != 2 or matrix.shape[1] != self._ncol \
                or not matrix.flags.c_contiguous:
            raise ValueError(f"expected a C-contiguous float64 matrix of {self._ncol} columns")
        out = np.empty(matrix.shape[0], dtype=np.float64)
        row_bytes, data, result = matrix.strides[0], matrix.ctypes.data, out.ctypes.data
        with self._lock:
            for i in range(matrix.shape[0]):
                _safe_call(_PREDICT_ROW(self._handle, data + i * row_bytes, self._out_len, result + i * 8))
        return out


def _free_fast_config(handle: int, booster: Any) -> None:
    """``booster`` is only passed to be kept alive until its fast config is freed."""
    _safe_call(_LIB.LGBM_FastConfigFree(ctypes.c_void_p(handle)))


def _row_function() -> Any:
    """``LGBM_BoosterPredictForMatSingleRowFast`` with argument types (a private copy: lightgbm's own handle
    of the function is left as it is)."""
    function = _LIB["LGBM_BoosterPredictForMatSingleRowFast"]
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


_PREDICT_ROW = _row_function()


class Scorer:
    """Scores request rows with one model: the encoder, then the single-row path for a few rows or
    ``booster.predict`` for more (its per-call setup is amortized there, and it is the faster of the two)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.encoder = Encoder(model.spec)
        self._single_row = SingleRowPredictor(model, len(self.encoder.features))

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Positive-class probabilities of ``rows``."""
        if not rows:
            return np.empty(0, dtype=np.float64)
        matrix = self.encoder.matrix(rows)
        if len(rows) <= FAST_PATH_MAX_ROWS:
            return self._single_row.predict(matrix)
        return self.model.predict_matrix(matrix, num_threads=1)
