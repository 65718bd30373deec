"""Benchmark monitoring: drift of 1M predictions x 40 features against a 1M-row reference, and performance
on 1M labelled predictions, through fti's monitoring code beside Evidently on the same data.

Data (seeded, written once as Parquet in a temporary directory that is removed afterwards, so every method
reads the same bytes): a reference and a current table of ``--rows`` rows each with 36 numeric inputs
(continuous doubles of several shapes, values rounded to one decimal, integer counts; some with NULLs),
4 categorical ones (3 to 200 categories) and the score; nine columns are shifted in the current table in
known ways (listed in :data:`SHIFTS`), the others are drawn from the same distributions again. A labelled
table of ``--rows`` predictions (score, 0/1 outcome, a 16-value slice column) for performance.

Methods, each run in a fresh process (its own interpreter for Evidently), so its peak RSS (VmHWM) is its
own:

* ``fti drift``: what :func:`models_ml.monitoring.pipeline.compute_drift` does once it has its rows, on a
  file-backed DuckDB warehouse: the reference (an Arrow table, as ``reference_rows`` gives it) profiled
  by :func:`~models_ml.monitoring.reference.write_reference`; the current rows (an Ibis expression over
  the Parquet file, labelled with their window) put in a scratch table; every statistic (PSI on
  reference-quantile bins and on categories with an unseen bucket, KS, missing rate and its change,
  out-of-range and unseen shares) computed and written by :func:`~models_ml.monitoring.drift.write_drift`;
* ``Evidently drift``: ``Report([DataDriftPreset()])`` (its defaults: normed Wasserstein distance for
  numeric columns, Jensen-Shannon distance for categorical ones at this size) on the same two tables read
  into pandas, with the columns' kinds declared;
* ``fti performance``: the labelled rows (Ibis over Parquet, one window) in a scratch table, and
  :func:`~models_ml.monitoring.performance.write_performance`: ROC-AUC, PR-AUC, log loss, Brier, ECE and
  the counts, overall and per slice value;
* ``Evidently performance``: ``Report([ClassificationPreset()])`` on the labelled rows (it computes
  accuracy, precision, recall, F1, ROC-AUC, log loss and curves, overall only: a different set).

Seconds are wall time from the data on disk to the statistics in hand (module imports not included),
CPU is user + sys of all the process's threads; the median over ``--repeats`` rounds is printed, and
rounds interleave the methods so a change in the machine's load hits all of them alike. Both engines'
drift verdicts are printed side by side for the shifted columns (a sanity check: the methods differ), and
both engines' ROC-AUC and log loss.

    .venv/bin/python bench/monitoring.py --evidently-python /tmp/evidently_env/bin/python
    .venv/bin/python bench/monitoring.py --rows 100000 --repeats 1     # a quick check

Evidently is not a dependency of fti: install it in a throwaway environment, e.g.
``python3 -m venv /tmp/evidently_env && /tmp/evidently_env/bin/pip install evidently==0.7.23 "pandas<3"
pyarrow``. Without ``--evidently-python`` its rows say "not installed" and fti's figures are printed alone.
"""

from __future__ import annotations

# Only the standard library at module level: this file also runs as the child process under Evidently's
# interpreter, which has neither fti nor its dependencies.
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
SEED = 12
NUMERIC = [f"num_{i:02d}" for i in range(36)]
CATEGORICAL = ["cat_small", "cat_medium", "cat_large", "cat_binary"]
CATEGORIES = {"cat_small": 8, "cat_medium": 30, "cat_large": 200, "cat_binary": 3}
SCORE = "score"
COLUMNS = [*NUMERIC, *CATEGORICAL, SCORE]
SLICE = "carrier"
WINDOW = ("2024-03-01T00:00:00+00:00", "2024-03-02T00:00:00+00:00")
# what the current table changes, by column (every other column is drawn again from the reference's law)
SHIFTS = {
    "num_00": "mean +0.5 sd",
    "num_01": "mean +0.1 sd (subtle)",
    "num_02": "sd x 1.5",
    "num_03": "missing 2% -> 30%",
    "num_04": "5% above the reference's max",
    "num_05": "Poisson mean 3 -> 4 (integers)",
    "cat_small": "a new category, 10% of rows",
    "cat_medium": "category weights reversed",
    SCORE: "Beta(2, 5) -> Beta(2.4, 5)",
}
METHODS = ["fti drift", "Evidently drift", "fti performance", "Evidently performance"]


# --------------------------------------------------------------------------------------------------
# Data


def numeric_column(rng, i: int, rows: int, current: bool):
    """Numeric input ``i``: one of six shapes by ``i % 6``; the first six columns are shifted in the current
    table as :data:`SHIFTS` says (for i < 6 the shape is the shift's subject)."""
    import numpy as np

    name = NUMERIC[i]
    shifted = current and name in SHIFTS
    shape = i % 6
    if i == 3:  # the missing-rate shift
        values = rng.normal(10.0, 3.0, rows)
        values[rng.random(rows) < (0.30 if shifted else 0.02)] = np.nan
        return values
    if i == 4:  # the out-of-range shift: the reference is bounded, 5% of the current rows beyond it
        values = rng.uniform(0.0, 100.0, rows)
        if shifted:
            beyond = rng.random(rows) < 0.05
            values[beyond] = rng.uniform(100.0, 120.0, beyond.sum())
        return values
    if i == 5:
        return rng.poisson(4.0 if shifted else 3.0, rows).astype(np.float64)
    if shape == 0:
        return rng.normal(0.5 if shifted else 0.0, 1.0, rows)
    if shape == 1:
        return rng.normal(0.1 if shifted else 0.0, 1.0, rows)
    if shape == 2:
        return rng.normal(0.0, 1.5 if shifted else 1.0, rows)
    if shape == 3:  # a delay-like column: log-normal minutes, a few NULLs
        values = rng.lognormal(2.0, 1.0, rows)
        values[rng.random(rows) < 0.01] = np.nan
        return values
    if shape == 4:  # a reading rounded to one decimal (temperature-like): few distinct values
        return np.round(rng.normal(15.0, 8.0, rows), 1)
    return rng.poisson(2.0 + i % 5, rows).astype(np.float64)  # an integer count


def categorical_column(rng, name: str, rows: int, current: bool):
    import numpy as np

    k = CATEGORIES[name]
    weights = 1.0 / np.arange(1, k + 1)  # Zipf-like: a few common categories, a long tail
    labels = np.array([f"{name[4]}{j:03d}" for j in range(k)], dtype=object)
    if current and name == "cat_medium":
        weights = weights[::-1]
    values = rng.choice(labels, rows, p=weights / weights.sum())
    if current and name == "cat_small":
        values[rng.random(rows) < 0.10] = "unseen"
    if name == "cat_large":
        values[rng.random(rows) < 0.02] = None  # a few NULLs
    return values


def generate(directory: Path, rows: int) -> dict[str, Path]:
    """Write the reference, current and labelled tables as Parquet; returns their paths."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    paths = {}
    for part in ("reference", "current"):
        current = part == "current"
        columns = {name: pa.array(numeric_column(rng, i, rows, current), pa.float64(), from_pandas=True)
                   for i, name in enumerate(NUMERIC)}  # NaN -> NULL
        columns |= {name: pa.array(categorical_column(rng, name, rows, current), pa.string()) for name in CATEGORICAL}
        columns[SCORE] = pa.array(rng.beta(2.4 if current else 2.0, 5.0, rows))
        paths[part] = directory / f"{part}.parquet"
        pq.write_table(pa.table(columns), paths[part])
    score = rng.beta(2.0, 5.0, rows)
    outcome = (rng.random(rows) < np.clip(score * 1.1, 0.0, 1.0)).astype(np.int64)  # slightly miscalibrated
    carriers = np.array([f"C{j:02d}" for j in range(16)], dtype=object)
    paths["labelled"] = directory / "labelled.parquet"
    pq.write_table(pa.table({SCORE: score, "y": outcome, SLICE: rng.choice(carriers, rows)}), paths["labelled"])
    return paths


# --------------------------------------------------------------------------------------------------
# Methods (each runs in its own child process; returns stage seconds and what it computed)


def fti_drift(data: Path) -> tuple[dict[str, float], dict]:
    sys.path.insert(0, str(ROOT))
    import datetime as dt

    import pyarrow.parquet as pq

    from models_ml.core.settings import load_settings
    from models_ml.core.time import TimeRange
    from models_ml.monitoring.drift import write_drift
    from models_ml.monitoring.profile import CATEGORICAL as CAT
    from models_ml.monitoring.profile import NUMERIC as NUM
    from models_ml.monitoring.profile import SCORE_FEATURE
    from models_ml.monitoring.reference import write_reference
    from models_ml.monitoring.tables import FEATURE_DRIFT, SCHEMA, ensure_tables
    from models_ml.offline.retrieval import utc_literal
    from models_ml.offline.store import opened

    span = TimeRange.of(*WINDOW)
    kinds = {name: NUM for name in NUMERIC} | {name: CAT for name in CATEGORICAL} | {SCORE_FEATURE: NUM}
    settings = load_settings(data / "home")
    stages = {}
    with opened(settings) as store:
        ensure_tables(store)
        started = time.perf_counter()
        # the reference as reference_rows gives it: an Arrow table of the inputs, the score as SCORE_FEATURE
        reference = pq.read_table(data / "reference.parquet")
        reference = reference.rename_columns([SCORE_FEATURE if c == SCORE else c for c in reference.column_names])
        stages["read reference (Arrow)"] = time.perf_counter() - started

        started = time.perf_counter()
        write_reference(store, "bench", 1, reference, kinds, snapshot_id="bench", spine_time_before=None)
        del reference
        stages["profile reference"] = time.perf_counter() - started

        started = time.perf_counter()  # as compute_drift: the window-labelled current rows in a scratch table
        rows = store.ibis.read_parquet(data / "current.parquet")
        current = rows.select(window_start=utc_literal(span.start), window_end=utc_literal(span.end),
                              **{name: rows[name] for name in [*NUMERIC, *CATEGORICAL]}, **{SCORE_FEATURE: rows[SCORE]})
        store.create_table(SCHEMA, "_current_bench", current)
        stages["current rows -> scratch"] = time.perf_counter() - started

        started = time.perf_counter()
        write_drift(store, f'{SCHEMA}."_current_bench"', kinds, model_name="bench", version=1, source="batch",
                    span=span, computed_at=dt.datetime.now(dt.timezone.utc))
        stages["drift statistics"] = time.perf_counter() - started
        store.drop_table(SCHEMA, "_current_bench")
        found: dict[str, dict[str, float]] = {}
        for row in store.query(f"select feature, statistic, value from {FEATURE_DRIFT}"):
            found.setdefault(SCORE if row["feature"] == SCORE_FEATURE else row["feature"], {})[row["statistic"]] = \
                row["value"]
    return stages, found


def fti_performance(data: Path) -> tuple[dict[str, float], dict]:
    sys.path.insert(0, str(ROOT))
    import datetime as dt

    from models_ml.core.settings import load_settings
    from models_ml.core.time import TimeRange
    from models_ml.monitoring.performance import OVERALL, slice_column, write_performance
    from models_ml.monitoring.tables import PERFORMANCE, SCHEMA, ensure_tables
    from models_ml.offline.retrieval import utc_literal
    from models_ml.offline.store import opened

    span = TimeRange.of(*WINDOW)
    settings = load_settings(data / "home-performance")
    stages = {}
    with opened(settings) as store:
        ensure_tables(store)
        started = time.perf_counter()  # as compute_performance: labelled_expr's columns in a scratch table
        rows = store.ibis.read_parquet(data / "labelled.parquet")
        store.create_table(SCHEMA, "_labelled_bench", rows.select(
            window_start=utc_literal(span.start), window_end=utc_literal(span.end), score=rows[SCORE],
            y=rows["y"], **{slice_column(0): rows[SLICE]}))
        stages["labelled rows -> scratch"] = time.perf_counter() - started

        started = time.perf_counter()
        write_performance(store, f'{SCHEMA}."_labelled_bench"', [SLICE], model_name="bench", version=1, span=span,
                          computed_at=dt.datetime.now(dt.timezone.utc))
        stages["metrics (overall + 16 slices)"] = time.perf_counter() - started
        store.drop_table(SCHEMA, "_labelled_bench")
        found = {row["metric"]: row["value"] for row in store.query(
            f"select metric, value from {PERFORMANCE} where slice_column = ?", [OVERALL])}
        found["slices"] = store.query(f"select count(distinct slice_value) as n from {PERFORMANCE} "
                                      f"where slice_column <> ?", [OVERALL])[0]["n"]
    return stages, found


def evidently_drift(data: Path) -> tuple[dict[str, float], dict]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    stages = {}
    started = time.perf_counter()
    reference = pd.read_parquet(data / "reference.parquet")
    current = pd.read_parquet(data / "current.parquet")
    stages["read both (pandas)"] = time.perf_counter() - started

    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=[*NUMERIC, SCORE], categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                               Dataset.from_pandas(reference, data_definition=definition))
    stages["DataDriftPreset report"] = time.perf_counter() - started
    found = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith(":ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            drifted = value < threshold if "p_value" in method else value >= threshold
            found[config["column"]] = {"method": method, "value": float(value), "threshold": float(threshold),
                                        "drifted": bool(drifted)}
        elif config.get("type", "").endswith(":DriftedColumnsCount"):
            found["__dataset__"] = metric["value"]
    return stages, found


def evidently_performance(data: Path) -> tuple[dict[str, float], dict]:
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    stages = {}
    started = time.perf_counter()
    rows = pd.read_parquet(data / "labelled.parquet")
    stages["read (pandas)"] = time.perf_counter() - started

    started = time.perf_counter()
    definition = DataDefinition(classification=[BinaryClassification(target="y", prediction_probas=SCORE)],
                                categorical_columns=[SLICE])
    snapshot = Report([ClassificationPreset()]).run(Dataset.from_pandas(rows, data_definition=definition), None)
    stages["ClassificationPreset report"] = time.perf_counter() - started
    found = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(", 1)[0]
        if name in ("RocAuc", "LogLoss", "Accuracy"):
            found[{"RocAuc": "roc_auc", "LogLoss": "log_loss", "Accuracy": "accuracy"}[name]] = metric["value"]
    return stages, found


CHILDREN = {"fti drift": fti_drift, "Evidently drift": evidently_drift, "fti performance": fti_performance,
            "Evidently performance": evidently_performance}


def memory(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # DuckDB's threads belong to this process
    return usage.ru_utime + usage.ru_stime


def child(method: str, data: Path) -> None:
    """Run one method once and print its figures as one JSON line (the last line of stdout)."""
    # imports first, outside the timing: the libraries a method needs, loaded before its clock starts
    if method.startswith("fti"):
        sys.path.insert(0, str(ROOT))
        import models_ml.monitoring.drift  # noqa: F401
        import models_ml.monitoring.performance  # noqa: F401
        import models_ml.offline.duckdb_store  # noqa: F401
    else:
        import evidently.presets  # noqa: F401
    base = memory("VmRSS")
    cpu, started = cpu_seconds(), time.perf_counter()
    stages, found = CHILDREN[method](data)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "stages": stages, "peak": memory("VmHWM"), "base": base,
                      "found": found}, default=str))


# --------------------------------------------------------------------------------------------------
# The parent: data, rounds, report


def run_child(python: str, method: str, data: Path) -> dict:
    done = subprocess.run([python, str(Path(__file__).resolve()), "--child", method, "--data", str(data)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{method} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def software(python: str | None) -> str:
    import duckdb
    import ibis
    import pyarrow

    line = f"fti side: duckdb {duckdb.__version__}, ibis {ibis.__version__}, pyarrow {pyarrow.__version__}"
    if python:
        versions = subprocess.run([python, "-c", "import evidently, pandas, numpy, scipy; print(evidently.__version__,"
                                   " pandas.__version__, numpy.__version__, scipy.__version__)"],
                                  capture_output=True, text=True)
        if versions.returncode == 0:
            e, p, n, s = versions.stdout.split()
            line += f"; Evidently {e} (pandas {p}, numpy {n}, scipy {s}) in {python}"
    return line


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def print_table(figures: dict[str, dict | None], rows: int, repeats: int) -> None:
    print("\n| method | rows | median s | runs s | CPU s | peak RSS | RSS after imports | vs Evidently |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    what = {"fti drift": f"{rows:,} x 41 vs {rows:,}", "Evidently drift": f"{rows:,} x 41 vs {rows:,}",
            "fti performance": f"{rows:,} labelled", "Evidently performance": f"{rows:,} labelled"}
    for method in METHODS:
        figure = figures.get(method)
        if figure is None:
            print(f"| {method} | {what[method]} | not installed | | | | | |")
            continue
        rival = figures.get(method.replace("fti", "Evidently")) if method.startswith("fti") else None
        ratio = f"{rival['seconds'] / figure['seconds']:.1f}x faster" if rival else ""
        print(f"| {method} | {what[method]} | {figure['seconds']:.2f} | "
              f"{', '.join(f'{s:.2f}' for s in figure['all_seconds'])} | {figure['cpu']:.1f} | {gib(figure['peak'])} | "
              f"{gib(figure['base'])} | {ratio} |")
    print(f"\n(median of {repeats} rounds; peak RSS is the highest VmHWM over the rounds, of the process doing the "
          f"work; seconds from the Parquet files to the statistics in hand)")
    for method in METHODS:
        figure = figures.get(method)
        if figure is not None:
            print(f"  {method} stages (median s): " + ", ".join(
                f"{stage} {seconds:.2f}" for stage, seconds in figure["stages"].items()))


def print_agreement(fti: dict, evidently: dict | None) -> None:
    sys.path.insert(0, str(ROOT))
    from models_ml.monitoring.config import Thresholds

    limits = Thresholds()
    print(f"\ndrift verdicts (fti: PSI >= {limits.psi} is a drift alert, |missing rate change| >= {limits.null_rate} "
          f"a null-rate alert; Evidently: DataDriftPreset's own per-column verdict):")
    print("| column | injected shift | fti PSI | KS | missing Δ | out of range | unseen | fti alert | "
          "Evidently method | value | Evidently drift |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|---:|---|")
    agree, fti_flags, evidently_flags = 0, [], []
    for column in COLUMNS:
        stats = fti[column]
        alerts = [a for a, hit in (("drift", stats["psi"] >= limits.psi),
                                   ("null rate", abs(stats["missing_rate_change"]) >= limits.null_rate)) if hit]
        theirs = (evidently or {}).get(column)
        if alerts:
            fti_flags.append(column)
        if theirs and theirs["drifted"]:
            evidently_flags.append(column)
        if theirs is not None:
            agree += bool(alerts) == theirs["drifted"]
        if column not in SHIFTS and not alerts and not (theirs and theirs["drifted"]):
            continue

        def fmt(key: str) -> str:
            return f"{stats[key]:.4f}" if key in stats else ""

        evidently_cells = (f"{theirs['method']} | {theirs['value']:.4f} | {'yes' if theirs['drifted'] else 'no'}"
                           if theirs else "not installed | | ")
        print(f"| {column} | {SHIFTS.get(column, 'none')} | {fmt('psi')} | {fmt('ks')} | {fmt('missing_rate_change')} | "
              f"{fmt('out_of_range_share')} | {fmt('unseen_share')} | {', '.join(alerts) or 'no'} | {evidently_cells} |")
    steady = [c for c in COLUMNS if c not in SHIFTS]
    worst = max(steady, key=lambda c: fti[c]["psi"])
    print(f"\nfti alerts on {len(fti_flags)} of {len(COLUMNS)} columns: {', '.join(fti_flags)}")
    print(f"unshifted columns ({len(steady)}): largest fti PSI {fti[worst]['psi']:.5f} ({worst}), largest KS "
          f"{max(fti[c].get('ks', 0.0) for c in steady):.5f}")
    if evidently:
        dataset = evidently.get("__dataset__", {})
        print(f"Evidently flags {len(evidently_flags)} of {len(COLUMNS)} columns: {', '.join(evidently_flags)} "
              f"(drifted share {dataset.get('share', float('nan')):.2f}); largest value on an unshifted column "
              f"{max(evidently[c]['value'] for c in steady):.4f}")
        print(f"verdicts agree on {agree} of {len(COLUMNS)} columns")


def print_performance(fti: dict, evidently: dict | None) -> None:
    keys = ["roc_auc", "pr_auc", "log_loss", "brier", "ece"]
    print(f"\nperformance, overall ({fti['slices']} slice values computed beside): "
          + ", ".join(f"fti {k} {fti[k]:.5f}" for k in keys))
    if evidently:
        print("  Evidently: " + ", ".join(f"{k} {evidently[k]:.5f}" for k in ("roc_auc", "log_loss") if k in evidently)
              + "; |difference| " + ", ".join(f"{k} {abs(fti[k] - evidently[k]):.1e}"
                                                for k in ("roc_auc", "log_loss") if k in evidently))


def summarize(runs: list[dict]) -> dict:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "all_seconds": [r["seconds"] for r in runs],
        "cpu": statistics.median(r["cpu"] for r in runs),
        "peak": max(r["peak"] for r in runs),
        "base": statistics.median(r["base"] for r in runs),
        "stages": {stage: statistics.median(r["stages"][stage] for r in runs) for stage in runs[0]["stages"]},
        "found": runs[-1]["found"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference, the current and the "
                                                                    "labelled tables (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs every method once in a new process")
    parser.add_argument("--evidently-python", help="the interpreter of an environment with evidently installed")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data)
        return 0
    if args.evidently_python and not Path(args.evidently_python).exists():
        parser.error(f"--evidently-python: {args.evidently_python} does not exist; give the python of the "
                     f"environment evidently is installed in")

    sys.path.insert(0, str(ROOT))
    from bench._machine import describe_machine

    print(f"monitoring benchmark: {describe_machine()}, {platform.system()} {platform.release()}")
    print(software(args.evidently_python))
    print(f"load average at the start: {load_average()} (other processes share the {os.cpu_count()} cores)",
          flush=True)
    pythons = {method: sys.executable if method.startswith("fti") else args.evidently_python for method in METHODS}
    methods = [m for m in METHODS if pythons[m]]
    with tempfile.TemporaryDirectory(prefix="fti-bench-monitoring-") as scratch:
        data = Path(scratch)
        started = time.perf_counter()
        paths = generate(data, args.rows)
        print(f"data: generated in {time.perf_counter() - started:.1f} s (seed {SEED}): "
              + ", ".join(f"{p.name} {p.stat().st_size / 1024**2:.0f} MiB" for p in paths.values()), flush=True)
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for round_ in range(args.repeats):
            for method in methods:
                if method.startswith("fti"):  # a fresh warehouse per run, as the first run of a day finds it
                    for home in ("home", "home-performance"):
                        subprocess.run(["rm", "-rf", str(data / home)], check=True)
                runs[method].append(run_child(pythons[method], method, data))
                print(f"  round {round_ + 1}: {method} {runs[method][-1]['seconds']:.2f} s, peak "
                      f"{gib(runs[method][-1]['peak'])}", flush=True)
    figures = {m: summarize(runs[m]) if m in runs else None for m in METHODS}
    print_table(figures, args.rows, args.repeats)
    evidently = figures["Evidently drift"]
    print_agreement(figures["fti drift"]["found"], evidently["found"] if evidently else None)
    performance = figures["Evidently performance"]
    print_performance(figures["fti performance"]["found"], performance["found"] if performance else None)

    drift = figures["fti drift"]
    speedup = evidently["seconds"] / drift["seconds"] if evidently else None
    print(f"\ntarget (issue 12): fti drift >= 10x faster than Evidently's DataDriftPreset and under 2 GiB: "
          f"{f'{speedup:.1f}x' if speedup else 'no Evidently to compare'}, peak {gib(drift['peak'])} "
          f"(performance {gib(figures['fti performance']['peak'])}): "
          f"{'met' if speedup and speedup >= 10 and drift['peak'] < 2 * GIB else 'MISSED' if speedup else 'memory ' + ('met' if drift['peak'] < 2 * GIB else 'MISSED')}")
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
