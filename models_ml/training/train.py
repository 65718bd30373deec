"""Training: LightGBM on a snapshot's time splits, with the encodings saved beside the model.

What keeps inference from drifting away from training is :class:`ModelSpec`: the exact feature list in
order, which features are categorical and their categories (fixed from the training split; a value never
seen in training becomes NaN, which LightGBM routes like a missing value). Training and inference both
turn an Arrow table into the model's input with the one encoder behind :func:`prepare_features` (a frame,
for training) and :func:`feature_matrix` (a float matrix, for scoring).

Determinism: the same snapshot and config give the same model, tree for tree: LightGBM runs with
``deterministic=True``, a fixed seed for every random choice, a fixed number of threads and row-wise
histograms, on rows in a fixed order (the snapshot's splits are sorted by spine time and entity keys).

Hyperparameters come from :class:`TrainConfig` (typed defaults), overlaid by the model's TOML file in
``models_ml/config/<view>.toml`` and then by explicit overrides.
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

MODEL_FILE = "model.txt"
SPEC_FILE = "model_spec.json"


# --------------------------------------------------------------------------------------------------
# Configuration


if typing.TYPE_CHECKING:
    from models_ml.core.settings import Settings
    from models_ml.definitions.catalog import Catalog


def read_config(view: str, path: Path | None = None, *, settings: Settings | None = None,
                catalog: Catalog | None = None) -> dict[str, Any]:
    """A model's training config, declared beside its feature view (the exposure's ``meta.fti.training``):
    ``{"train": {...}, "split": {...}, "evaluation": {...}, "gate": {...}}``, only the sections it declares;
    empty when the project has no such view.

    The project is ``catalog``'s, else the one ``settings`` (default: :func:`load_settings`) point to.
    ``path`` reads a TOML file of the same shape instead (empty when it does not exist), for a config
    tried outside the project."""
    if path is not None:
        if not path.exists():
            return {}
        with path.open("rb") as handle:
            return tomllib.load(handle)
    if catalog is None:
        from models_ml.core.settings import load_settings
        from models_ml.definitions.catalog import load_catalog

        catalog = load_catalog(settings if settings is not None else load_settings())
    found = catalog.views.get(view)
    return found.training.as_dict() if found is not None else {}


T = typing.TypeVar("T")


def config_from_mapping(cls: type[T], *layers: Mapping[str, Any] | None) -> T:
    """A config dataclass from its defaults overlaid by each mapping in turn, type-checked by field.

    An unknown key is an error (a typo in a hyperparameter should not be silently ignored).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in names:
                raise ValueError(f"{cls.__name__} has no setting {key!r}; known: {', '.join(sorted(names))}")
            values[key] = _coerce(value, hints[key], f"{cls.__name__}.{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"{where} cannot be None")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, where) for v in value)
    if hint is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"{where}: {value!r} is not a boolean")
        return bool(value)
    if hint in (int, float, str):
        try:
            coerced = hint(value)
        except (TypeError, ValueError) as error:
            kind = {int: "an integer", float: "a number", str: "a string"}[hint]
            raise ValueError(f"{where}: {value!r} is not {kind}") from error
        if hint is int and isinstance(value, float) and value != coerced:
            raise ValueError(f"{where}: {value!r} is not an integer")
        return coerced
    return value


@dataclass(frozen=True)
class TrainConfig:
    """LightGBM hyperparameters and the training loop's settings (see the module docstring on determinism)."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = -1
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l1: float = 0.0
    lambda_l2: float = 1.0
    max_bin: int = 255
    cat_smooth: float = 10.0
    cat_l2: float = 10.0
    max_cat_to_onehot: int = 4
    min_data_per_group: int = 100
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    seed: int = 42
    num_threads: int = 1
    # Columns to treat as categorical although they are not strings (e.g. integer codes).
    categorical_features: tuple[str, ...] = ()
    # Categories seen fewer times than this in training are dropped (they become NaN like unseen ones).
    min_category_count: int = 1

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": ["binary_logloss", "auc"],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "max_depth": self.max_depth,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l1": self.lambda_l1,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "cat_smooth": self.cat_smooth,
            "cat_l2": self.cat_l2,
            "max_cat_to_onehot": self.max_cat_to_onehot,
            "min_data_per_group": self.min_data_per_group,
            "seed": self.seed,
            "bagging_seed": self.seed + 1,
            "feature_fraction_seed": self.seed + 2,
            "data_random_seed": self.seed + 3,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["categorical_features"] = list(self.categorical_features)
        return data


# --------------------------------------------------------------------------------------------------
# The model's input contract


@dataclass
class ModelSpec:
    """Everything inference needs to rebuild training's input: features in order and their encodings."""

    feature_view: str
    feature_view_version: int
    target: str
    features: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # categorical feature -> categories

    @property
    def categorical(self) -> list[str]:
        return [f for f in self.features if f in self.categories]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        return cls(
            feature_view=data["feature_view"],
            feature_view_version=int(data["feature_view_version"]),
            target=data["target"],
            features=list(data["features"]),
            categories={k: list(v) for k, v in data.get("categories", {}).items()},
        )


def _is_categorical(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)


def _as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def fit_spec(
    train: pa.Table,
    features: Sequence[str],
    target: str,
    config: TrainConfig,
    feature_view: str = "",
    feature_view_version: int = 0,
) -> ModelSpec:
    """The input contract learnt from the training split: string (and forced) columns become categorical
    with the categories seen in training, sorted so their codes do not depend on row order."""
    missing = [c for c in [*features, target] if c not in train.column_names]
    if missing:
        raise ValueError(f"training table lacks columns {missing}")
    unknown = [c for c in config.categorical_features if c not in features]
    if unknown:
        raise ValueError(f"categorical_features {unknown} are not features of this model")
    categories: dict[str, list[str]] = {}
    for name in features:
        column = train[name]
        if _is_categorical(column.type) or name in config.categorical_features:
            counts = pc.value_counts(_as_strings(column).combine_chunks())
            values, counts = counts.field("values").to_pylist(), counts.field("counts").to_pylist()
            categories[name] = sorted(v for v, n in zip(values, counts) if v is not None and n >= config.min_category_count)
    return ModelSpec(feature_view, feature_view_version, target, list(features), categories)


def _encoded_columns(table: pa.Table, spec: ModelSpec) -> Iterator[tuple[str, np.ndarray, bool]]:
    """``(name, values, is_categorical)`` per model feature, in order: the single place where raw feature
    values are encoded. Numeric columns as float64 (NULL -> NaN); categorical ones as int codes, the value's
    position in the spec's categories (fixed at training; NULL or unseen -> -1), computed in Arrow without a
    Python string per row: the codes ``pd.Categorical(values, categories)`` gives."""
    missing = [c for c in spec.features if c not in table.column_names]
    if missing:
        raise ValueError(f"input lacks the model's features {missing}")
    for name in spec.features:
        column = table[name]
        if name in spec.categories:
            codes = pc.index_in(_as_strings(column), value_set=pa.array(spec.categories[name], pa.string()))
            yield name, pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), True
            continue
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type) or pa.types.is_decimal(column.type)):
            raise ValueError(f"feature {name!r} has type {column.type}, which the model cannot use as numeric")
        yield name, pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), False


def prepare_features(table: pa.Table, spec: ModelSpec) -> pd.DataFrame:
    """The model's input frame from an Arrow table (training and evaluation): exactly ``spec.features`` in
    order, numeric columns as float64, categorical ones as pandas categories fixed by the spec."""
    columns: dict[str, Any] = {
        name: pd.Categorical.from_codes(values, categories=spec.categories[name]) if categorical else values
        for name, values, categorical in _encoded_columns(table, spec)
    }
    # copy=False: no consolidating copy here (LightGBM makes its own float matrix from the frame anyway).
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows), copy=False)


def _float_columns(table: pa.Table, spec: ModelSpec) -> list[np.ndarray]:
    """The model's input columns as float64 arrays, in ``spec.features`` order: what LightGBM makes of
    :func:`prepare_features`' frame when it predicts (``lightgbm.basic._data_from_pandas``: category codes
    as floats, -1 -> NaN)."""
    return [np.where(values < 0, np.nan, values) if categorical else values
            for _, values, categorical in _encoded_columns(table, spec)]


_FILL_ROWS = 4096  # rows per block when filling a matrix: a block (4096 x features x 8 bytes) stays in cache


def feature_matrix(table: pa.Table, spec: ModelSpec, out: np.ndarray | None = None) -> np.ndarray:
    """The float64 matrix (rows x ``spec.features``, C order) LightGBM builds from :func:`prepare_features`'
    frame when it predicts, built straight from Arrow: scoring skips pandas and LightGBM's own copy of the
    frame, and the scores are the same bits (tests/training/test_train_evaluate.py). ``out``: a matrix
    with at least as many rows to fill (batch scoring reuses one), else a new one.

    Filled a block of rows at a time: writing a whole column at a time into a row-major matrix touches a
    new cache line per value, several times slower on a million rows.
    """
    rows, columns = table.num_rows, _float_columns(table, spec)
    if out is None:
        out = np.empty((rows, len(columns)), dtype=np.float64)
    elif out.shape[0] < rows or out.shape[1] != len(columns) or out.dtype != np.float64:
        raise ValueError(f"out has shape {out.shape} ({out.dtype}); {rows} x {len(columns)} float64 needed")
    out = out[:rows]
    for start in range(0, rows, _FILL_ROWS):
        block = out[start:start + _FILL_ROWS]
        for j, values in enumerate(columns):
            block[:, j] = values[start:start + _FILL_ROWS]
    return out


def target_array(table: pa.Table, target: str) -> np.ndarray:
    """The 0/1 target; a NULL target is an error (the label model guarantees none)."""
    column = table[target]
    if column.null_count:
        raise ValueError(f"target {target!r} has {column.null_count} NULL values")
    return pc.cast(column, pa.int8()).to_numpy(zero_copy_only=False).astype(np.int32)


# --------------------------------------------------------------------------------------------------
# The model


@dataclass
class Model:
    """A trained (or loaded) LightGBM booster with its input contract."""

    booster: lgb.Booster
    spec: ModelSpec
    params: dict[str, Any]
    best_iteration: int
    training_seconds: float | None = None
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # The same trees compiled to C (models_ml.inference.batch.compiled_trees.CompiledTrees, which gives the
    # very same scores), set by batch inference; prediction uses it when present.
    compiled: Any = field(default=None, repr=False, compare=False)

    def predict(self, table: pa.Table, num_threads: int | None = None) -> np.ndarray:
        """Probability of the positive class for each row of an Arrow table holding the features
        (``num_threads``: LightGBM's default when None; the scores do not depend on it)."""
        return self.predict_matrix(feature_matrix(table, self.spec), num_threads)

    def predict_matrix(self, matrix: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Probabilities for a :func:`feature_matrix`."""
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        if self.compiled is not None:
            return self.compiled.predict(matrix, num_threads)
        extra = {} if num_threads is None else {"num_threads": num_threads}
        return self.booster.predict(matrix, num_iteration=self.best_iteration or None, **extra)

    def feature_importance(self, kind: str = "gain") -> dict[str, float]:
        values = self.booster.feature_importance(importance_type=kind, iteration=self.best_iteration or None)
        return {name: float(v) for name, v in zip(self.booster.feature_name(), values)}

    def best_scores(self) -> dict[str, dict[str, float]]:
        """Each eval set's metrics at the best iteration."""
        index = (self.best_iteration or 0) - 1
        return {
            dataset: {metric: float(values[index]) for metric, values in metrics.items() if values}
            for dataset, metrics in self.history.items()
        }


def train_model(
    train: pa.Table,
    validation: pa.Table,
    *,
    features: Sequence[str],
    target: str,
    config: TrainConfig | None = None,
    feature_view: str = "",
    feature_view_version: int = 0,
) -> Model:
    """Fit LightGBM on ``train`` with early stopping on ``validation`` (binary log loss)."""
    config = config or TrainConfig()
    if train.num_rows == 0 or validation.num_rows == 0:
        raise ValueError("training and validation splits must both have rows")
    spec = fit_spec(train, features, target, config, feature_view, feature_view_version)
    params = config.lightgbm_params()
    train_set = lgb.Dataset(
        prepare_features(train, spec), label=target_array(train, target),
        categorical_feature=spec.categorical or "auto", free_raw_data=True, params={"verbosity": -1},
    )
    validation_set = lgb.Dataset(
        prepare_features(validation, spec), label=target_array(validation, target), reference=train_set,
        categorical_feature=spec.categorical or "auto", free_raw_data=True,
    )
    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[train_set, validation_set],
        valid_names=["train", "validation"],
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
        ],
    )
    seconds = time.perf_counter() - started
    best = booster.best_iteration or booster.current_iteration()
    return Model(booster, spec, params, best, seconds, history)


def save_model(model: Model, directory: Path) -> dict[str, Path]:
    """Write ``model.txt`` (LightGBM, trees up to the best iteration) and ``model_spec.json`` (contract)."""
    directory.mkdir(parents=True, exist_ok=True)
    model_path, spec_path = directory / MODEL_FILE, directory / SPEC_FILE
    model.booster.save_model(str(model_path), num_iteration=model.best_iteration or None)
    spec_path.write_text(json.dumps({
        "spec": model.spec.as_dict(),
        "params": model.params,
        "best_iteration": model.best_iteration,
        "training_seconds": model.training_seconds,
        "lightgbm_version": lgb.__version__,
    }, indent=2, sort_keys=True))
    return {"model": model_path, "spec": spec_path}


def load_model(directory: Path) -> Model:
    """A model saved by :func:`save_model`."""
    data = json.loads((directory / SPEC_FILE).read_text())
    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    return Model(
        booster=booster,
        spec=ModelSpec.from_dict(data["spec"]),
        params=data.get("params", {}),
        best_iteration=int(data.get("best_iteration") or booster.current_iteration()),
        training_seconds=data.get("training_seconds"),
    )
