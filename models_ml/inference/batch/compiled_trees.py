"""A LightGBM model's trees compiled to C: the same scores, bit for bit, several times faster in batch.

LightGBM's own prediction walks arrays of nodes and, for every row, first copies the row into a list of
(feature, value) pairs; for a few dozen trees that bookkeeping costs more than the trees. Here each tree
becomes a C function of nested comparisons, compiled once per model (``cc -O2``) into a shared library
that scores a float matrix (:func:`models_ml.training.train.feature_matrix`) in place.

Same scores, not close ones: the generated code follows LightGBM's ``Tree::NumericalDecision`` and
``CategoricalDecision`` (v4) exactly. A value within 1e-35 of zero is read as zero (the dense-matrix path
drops such values), a NaN is 0.0 unless the split's missing type is NaN, a missing value goes the split's
default way, ``value <= threshold`` goes left; a categorical value goes left when it is in the split's
bitset, a NaN or negative value right. Thresholds and leaf values are copied from the model text as exact
hexadecimal literals, tree outputs are summed in tree order from 0.0 and the binary objective's sigmoid is
``1 / (1 + exp(-sigmoid * sum))`` with the C library's ``exp``, as LightGBM computes it; no fast-math and
no contraction into fused multiply-adds. tests/inference/batch/test_compiled_trees.py compares every
score with ``Booster.predict`` (NaNs, zeros, unseen and negative categories, default directions).

Only what that covers is compiled: a binary objective, one tree per iteration, no linear trees. Anything
else, or a machine without a C compiler, gets None from :func:`compile_trees`, and the caller keeps
LightGBM's prediction. Libraries are cached by the hash of their source, the compiler and the machine,
so a model is compiled once per home and machine (about a second for a hundred trees).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np

from models_ml.core.home_lock import process_alive

_FLAGS = ("-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")
_SYMBOL = "fti_predict"
_PARALLEL_MIN_ROWS = 4096  # below this, one thread: starting a second costs more than it saves
_SCRATCH_PREFIX = ".compiling-"  # then the compiling process: see _scratch_prefix


# --------------------------------------------------------------------------------------------------
# The model text, as LightGBM reads it


@dataclass(frozen=True)
class _Tree:
    split_feature: list[int]
    threshold: list[float]
    decision_type: list[int]
    left_child: list[int]
    right_child: list[int]
    leaf_value: list[float]
    cat_boundaries: list[int]
    cat_threshold: list[int]


class Unsupported(ValueError):
    """A model this compiler does not cover (the caller keeps LightGBM's prediction)."""


def _parse(text: str) -> tuple[int, float, list[_Tree]]:
    """(number of features, sigmoid, trees) from a model string; Unsupported for anything but binary GBDT."""
    header, *blocks = text.split("\nTree=")
    fields = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    objective = fields.get("objective", "").split()
    if not objective or objective[0] != "binary":
        raise Unsupported(f"objective {fields.get('objective')!r}: only binary is compiled")
    if int(fields.get("num_tree_per_iteration", "1")) != 1 or int(fields.get("num_class", "1")) != 1:
        raise Unsupported("more than one tree per iteration")
    if "average_output" in header.splitlines():
        raise Unsupported("averaged output (random forest)")
    sigmoid = 1.0
    for option in objective[1:]:
        if option.startswith("sigmoid:"):
            sigmoid = float(option.split(":", 1)[1])
    trees = []
    for block in blocks:
        block = block.split("\nend of trees", 1)[0]
        values = dict(line.split("=", 1) for line in block.splitlines()[1:] if "=" in line)
        if values.get("is_linear", "0") != "0":
            raise Unsupported("linear trees")

        def ints(name: str) -> list[int]:
            return [int(v) for v in values.get(name, "").split()]

        def floats(name: str) -> list[float]:
            return [float(v) for v in values.get(name, "").split()]

        trees.append(_Tree(ints("split_feature"), floats("threshold"), ints("decision_type"), ints("left_child"),
                           ints("right_child"), floats("leaf_value"), ints("cat_boundaries"), ints("cat_threshold")))
    return int(fields["max_feature_idx"]) + 1, sigmoid, trees


# --------------------------------------------------------------------------------------------------
# C source


def _literal(value: float) -> str:
    """An exact C literal of a double (hexadecimal), infinities included."""
    if value != value:
        raise Unsupported("NaN in the model")
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return value.hex()


def _condition(tree: _Tree, tree_index: int, node: int) -> str:
    """The C expression that is true when ``node`` sends the row (``v``, zero-normalized) left."""
    feature, kind = tree.split_feature[node], tree.decision_type[node]
    value = f"v[{feature}]"
    if kind & 1:  # categorical: in the bitset goes left; NaN, negative (or beyond int) goes right
        index = int(tree.threshold[node])
        start, end = tree.cat_boundaries[index], tree.cat_boundaries[index + 1]
        return f"cat({value}, bits{tree_index}_{node}, {end - start})"
    default_left = "1" if kind & 2 else "0"
    missing = (kind >> 2) & 3
    threshold = _literal(tree.threshold[node])
    if missing == 2:  # NaN is the missing value
        return f"(isnan({value}) ? {default_left} : {value} <= {threshold})"
    zeroed = f"(isnan({value}) ? 0.0 : {value})"
    if missing == 1:  # zero is the missing value (NaN read as zero first)
        return f"(is_zero({zeroed}) ? {default_left} : {zeroed} <= {threshold})"
    return f"({zeroed} <= {threshold})"


def _tree_function(index: int, tree: _Tree) -> str:
    lines = []
    for node, kind in enumerate(tree.decision_type):  # each categorical split's bitset, as a static array
        if kind & 1:
            position = int(tree.threshold[node])
            start, end = tree.cat_boundaries[position], tree.cat_boundaries[position + 1]
            words = ", ".join(f"{w}u" for w in tree.cat_threshold[start:end]) or "0u"
            lines.append(f"static const uint32_t bits{index}_{node}[] = {{{words}}};")
    lines.append(f"static double tree{index}(const double *v) {{")
    if not tree.split_feature:  # a single leaf
        lines.append(f"  return {_literal(tree.leaf_value[0])};")
    else:
        def emit(node: int, depth: int) -> None:
            pad = "  " * depth
            if node < 0:
                lines.append(f"{pad}return {_literal(tree.leaf_value[~node])};")
                return
            lines.append(f"{pad}if ({_condition(tree, index, node)}) {{")
            emit(tree.left_child[node], depth + 1)
            lines.append(f"{pad}}} else {{")
            emit(tree.right_child[node], depth + 1)
            lines.append(f"{pad}}}")
        emit(0, 1)
    lines.append("}")
    return "\n".join(lines)


def c_source(text: str) -> str:
    """The C source scoring the model string ``text`` (Unsupported when it is not covered)."""
    features, sigmoid, trees = _parse(text)
    for tree in trees:
        used = [f for f in tree.split_feature if f >= features]
        if used:
            raise Unsupported(f"split on feature {used[0]} of {features}")
    head = f"""#include <math.h>
#include <stdint.h>

#define N_FEATURES {features}
static const double zero_threshold = (double)1e-35f; /* LightGBM's kZeroThreshold */

static inline int is_zero(double x) {{ return x >= -zero_threshold && x <= zero_threshold; }}

static inline int cat(double x, const uint32_t *bits, int words) {{
  if (isnan(x) || x >= 2147483648.0) return 0;
  int i = (int)x;
  if (i < 0 || i / 32 >= words) return 0;
  return (bits[i / 32] >> (i % 32)) & 1;
}}
"""
    body = [_tree_function(i, tree) for i, tree in enumerate(trees)]
    sums = "\n".join(f"    sum += tree{i}(v);" for i in range(len(trees)))
    main = f"""
void {_SYMBOL}(const double *matrix, int64_t rows, int64_t stride, double *out) {{
  double v[N_FEATURES];
  for (int64_t r = 0; r < rows; r++) {{
    const double *row = matrix + r * stride;
    for (int j = 0; j < N_FEATURES; j++) v[j] = fabs(row[j]) <= zero_threshold ? 0.0 : row[j];
    double sum = 0.0;
{sums}
    out[r] = 1.0 / (1.0 + exp(-{_literal(sigmoid)} * sum));
  }}
}}
"""
    return head + "\n\n".join(body) + "\n" + main


# --------------------------------------------------------------------------------------------------
# Compiling, loading, scoring


@dataclass
class CompiledTrees:
    """A compiled model: :meth:`predict` gives ``Booster.predict``'s probabilities for a float matrix.

    Pickles as its library's path (the handle is reopened on first use), so a run that passes the model
    between processes or persists task results keeps working."""

    path: Path
    features: int
    _function: object = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {"path": self.path, "features": self.features, "_function": None}

    def _loaded(self):
        if self._function is None:
            function = getattr(ctypes.CDLL(str(self.path)), _SYMBOL)
            function.restype = None
            function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
            self._function = function
        return self._function

    def predict(self, matrix: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Probabilities of the positive class, one per row of a C-ordered float64 matrix."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.features:
            raise ValueError(f"matrix of shape {matrix.shape}; {self.features} feature columns expected")
        rows = len(matrix)
        out = np.empty(rows, dtype=np.float64)
        function = self._loaded()
        threads = max(1, min(num_threads or os.cpu_count() or 1, rows // _PARALLEL_MIN_ROWS or 1))

        def run(start: int, stop: int) -> None:  # ctypes releases the GIL for the call
            function(matrix[start:].ctypes.data, stop - start, self.features, out[start:].ctypes.data)

        if threads == 1:
            run(0, rows)
        else:
            cuts = np.linspace(0, rows, threads + 1).astype(int)
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, cuts[:-1], cuts[1:]))
        return out


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


@functools.lru_cache(maxsize=None)
def _compiler_identity(compiler: str) -> str:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return compiler
    return f"{compiler}\n{version.splitlines()[0] if version else ''}"


def _scratch_prefix(pid: int) -> str:
    """A compilation's scratch folder names its process, ``<pid>@<host>-`` (tempfile then adds a suffix
    without dashes): a home on a shared disk may be used from several machines, where a PID alone means
    nothing."""
    return f"{_SCRATCH_PREFIX}{pid}@{socket.gethostname()}-"


def _remove_abandoned_scratch(cache_dir: Path) -> None:
    """Remove the scratch folders of compilations whose process has died (a killed run skips the temporary
    folder's cleanup); a live process's, which may be compiling now, and another host's are left alone."""
    for folder in cache_dir.glob(f"{_SCRATCH_PREFIX}*@*-*"):
        pid, _, rest = folder.name.removeprefix(_SCRATCH_PREFIX).partition("@")
        if pid.isdigit() and not process_alive(int(pid), rest.rpartition("-")[0]):
            shutil.rmtree(folder, ignore_errors=True)


def compile_trees(booster: lgb.Booster, num_iteration: int | None, cache_dir: Path) -> CompiledTrees | None:
    """The first ``num_iteration`` iterations of ``booster`` (all when None or 0) compiled, from
    ``cache_dir`` when compiled before; None when the model is not covered or nothing can compile it."""
    compiler = _compiler()
    if compiler is None:
        return None
    text = booster.model_to_string(num_iteration=num_iteration or None)
    try:
        source = c_source(text)
    except Unsupported:
        return None
    features = booster.num_feature()
    key = hashlib.sha256("\n".join([source, _compiler_identity(compiler), *_FLAGS, platform.machine(),
                                    lgb.__version__]).encode()).hexdigest()[:32]
    path = cache_dir / f"trees-{key}.so"
    _remove_abandoned_scratch(cache_dir)
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=_scratch_prefix(os.getpid())) as scratch:
            c_file, built = Path(scratch) / "trees.c", Path(scratch) / "trees.so"
            c_file.write_text(source)
            try:
                subprocess.run([compiler, *_FLAGS, "-o", str(built), str(c_file), "-lm"], check=True,
                               capture_output=True, timeout=600)
            except (OSError, subprocess.SubprocessError):
                return None
            os.replace(built, path)  # atomic: a concurrent run sees the whole library or none
    compiled = CompiledTrees(path, features)
    try:
        compiled._loaded()
    except OSError:  # a library built elsewhere that this machine cannot load
        return None
    return compiled
