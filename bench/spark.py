"""Benchmark: the point-in-time join and a month's dbt build on local Spark against DuckDB, in the same run.

Two workloads, each run on DuckDB (the embedded default) and on a local Spark session with one and with two
cores (``local[1]``, ``local[2]``), every run in a fresh spawned process so its memory is its own:

* **point-in-time join**, the medium size: a 100,000-row spine joined with two feature tables of 1,000,000
  rows each (20,000 entities, ties, NULL keys, TTLs of 7 and 30 days; ``bench/pit_join.py``'s seeded
  generator), through :func:`models_ml.offline.pit.point_in_time_join` to Arrow. On Spark the tables are
  first written to the session's warehouse as Parquet (timed apart: "load"); the join is timed on its second
  run in the process, as on DuckDB, so neither pays for its warm-up (Spark's first query also compiles its
  code paths). Every run must give the same answer: row count and an order-independent hash of the row id
  and features.
* **dbt build of a month**: January 2013 of the real flights, landed by the project's loader into a DuckDB
  home; ``dbt build --selector spark`` (the flights domain: staging, feature groups, labels, spines, their
  unit and data tests) from empty, on the ``dev`` target and on the ``spark`` target (dbt-spark's session
  method, the offline store's session). On Spark the landed raw tables are copied into the warehouse first
  (timed apart); the session's start-up is timed apart too.

Peak memory is the high-water mark of resident memory (VmHWM) of the process plus, on Spark, that of its
JVM (a child process). Spark is expected to be slower on one 2-core machine: the table shows where its time
goes (session start, per-query planning and task scheduling, Parquet writes) and how it changes from one
core to two, so a reader can extrapolate to a cluster.

Every figure is the median of ``--repeat`` rounds (default 3); a round runs every engine once, each in a
new process and, for the dbt build, a new home, so every build starts from empty.

    .venv/bin/python bench/spark.py                 # both workloads, 3 rounds, ~30 minutes on 2 cores
    .venv/bin/python bench/spark.py --repeat 1      # one round, ~10 minutes
    .venv/bin/python bench/spark.py --skip-dbt      # the join only
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import queue as queue_module
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pit_join  # noqa: E402
from bench._machine import describe_machine  # noqa: E402

GIB = 1024**3
SPINE_ROWS, FEATURE_ROWS, ENTITIES = 100_000, 1_000_000, 20_000
MONTH_END = dt.date(2013, 1, 31)
RAW_TABLES = ("flights", "weather", "schedule", "planes", "airlines", "airports")
ENGINES = ("duckdb", "local[1]", "local[2]")
DUCKDB_HOME = "duckdb-home"  # the month landed and built on DuckDB


# --------------------------------------------------------------------------------------------------
# Memory of a process and its children (the JVM of a local Spark session)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _high_water_mark(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_memory() -> int:
    """This process's VmHWM plus its descendants' (read before they exit)."""
    total, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        total += _high_water_mark(pid)
        pending.extend(_children(pid))
    return total


# --------------------------------------------------------------------------------------------------
# The engines' homes


def home_name(kind: str, master: str) -> str:
    """A folder name for a home on `master`: no brackets, which Hadoop reads as a glob in a path."""
    return f"{kind}-" + master.replace("[", "").replace("]", "")


def spark_settings(home: Path, master: str):
    """Settings of a Spark home: FTI_ENGINE=spark (the offline store and the dbt target) on `master`."""
    os.environ.update({"FTI_HOME": str(home), "FTI_ENGINE": "spark", "FTI_SPARK_MASTER": master})
    from models_ml.core.settings import load_settings

    settings = load_settings(home)
    settings.ensure_home()
    return settings


def started_spark_store(settings):
    """The Spark store, its session started (timed by the caller)."""
    from models_ml.offline.store import open_offline_store

    store = open_offline_store(settings)
    store.execute("select 1")
    return store


def copy_tables(duckdb_path: Path, store, schema: str, tables: tuple[str, ...]) -> None:
    """`schema`.`tables` of a DuckDB file written into the Spark warehouse as Parquet tables."""
    import duckdb

    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        for table in tables:
            store.create_table(schema, table, con.execute(f"select * from {schema}.{table}").to_arrow_table(),
                               overwrite=True)


def spark_home_with(home: Path, master: str, duckdb_path: Path, schema: str, tables: tuple[str, ...],
                    figures: dict):
    """A Spark home on `master` holding `schema`.`tables` of a DuckDB file: (settings, store). The session's
    start and the copy are timed into ``figures`` (``session_s``, ``load_s``), apart from the workload."""
    settings = spark_settings(home, master)
    start = time.perf_counter()
    store = started_spark_store(settings)
    figures["session_s"] = time.perf_counter() - start
    start = time.perf_counter()
    copy_tables(duckdb_path, store, schema, tables)
    figures["load_s"] = time.perf_counter() - start
    return settings, store


# --------------------------------------------------------------------------------------------------
# Workloads (each in a fresh process)


def join_sources(table):
    import datetime

    from models_ml.offline.pit import FeatureSource

    return [
        FeatureSource(table=table(name), keys=["entity_id"], event_time="event_at", created_time="created_at",
                      features=pit_join.FEATURES[name], ttl=datetime.timedelta(days=pit_join.TTL_DAYS[name]))
        for name in pit_join.FEATURES
    ]


def pit_child(engine: str, data: str, work: str, round_: int, queue) -> None:
    from models_ml.offline.pit import point_in_time_join

    figures: dict = {}
    if engine == "duckdb":
        import ibis

        con = ibis.duckdb.connect(data, read_only=True)
        spine, sources, to_arrow = con.table("spine"), join_sources(con.table), lambda e: e.to_pyarrow()
    else:
        _, store = spark_home_with(Path(work) / home_name(f"pit{round_}", engine), engine, Path(data), "main",
                                   ("spine", *pit_join.FEATURES), figures)
        spine = store.table("main", "spine")
        sources, to_arrow = join_sources(lambda name: store.table("main", name)), store.to_arrow

    def once():
        return to_arrow(point_in_time_join(spine, "ts", sources))

    start = time.perf_counter()
    once()  # warm-up, result dropped
    figures["first_s"] = time.perf_counter() - start
    start = time.perf_counter()
    result = once()
    figures["seconds"] = time.perf_counter() - start
    figures["peak"] = peak_memory()
    figures["rows"], figures["digest"], _ = pit_join.checksum(result)
    queue.put(figures)


def dbt_child(engine: str, data: str, work: str, round_: int, queue) -> None:
    from models_ml.features.dbt_runner import build

    figures: dict = {}
    if engine == "duckdb":
        from models_ml.core.settings import load_settings

        settings = load_settings(Path(work) / f"{DUCKDB_HOME}{round_}")
        settings.ensure_home()
        shutil.copyfile(data, settings.warehouse_path)  # the landed month, nothing built yet
    else:
        settings, store = spark_home_with(Path(work) / home_name(f"dbt{round_}", engine), engine, Path(data),
                                          "raw", RAW_TABLES, figures)
    build(settings, ["parse"])  # not timed: a parse costs the same on both
    start = time.perf_counter()
    run = build(settings, ["build", "--selector", "spark"])
    figures["seconds"] = time.perf_counter() - start
    figures["peak"] = peak_memory()
    figures["models_s"] = sum(o.execution_time for o in run.outcomes if o.resource_type == "model")
    figures["tests_s"] = sum(o.execution_time for o in run.outcomes if o.resource_type in ("test", "unit_test"))
    figures["nodes"] = len(run.outcomes)
    if engine == "duckdb":
        from models_ml.offline.store import opened

        with opened(settings, read_only=True) as store:
            figures["rows"] = rows_built(store)
    else:
        figures["rows"] = rows_built(store)
    queue.put(figures)


def rows_built(store) -> dict[str, int]:
    """Row counts of the feature and label tables the build published."""
    return {f"{schema}.{name}": int(store.scalar(f"select count(*) from {schema}.{name}"))
            for schema, name in sorted(store.relations()) if schema in ("features", "labels")}


def in_fresh_process(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:  # a child that dies without reporting must not leave the parent waiting
        try:
            figures = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__}{args[:1]} exited with {process.exitcode}") from None
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{target.__name__}{args[:1]} exited with {process.exitcode}")
    return figures


# --------------------------------------------------------------------------------------------------
# Report


def median_of(rounds: list[dict]) -> dict:
    """One engine's figures over its rounds: the median of each time, the highest peak, the rounds' times."""
    summary = {key: statistics.median(r[key] for r in rounds)
               for key, value in rounds[0].items() if isinstance(value, float) and key != "peak"}
    summary["peak"] = max(r["peak"] for r in rounds)
    summary["rounds"] = [r["seconds"] for r in rounds]
    return summary


def cell(figures: dict, key: str) -> str:
    return f"{figures[key]:>8.1f}" if key in figures else f"{'-':>8}"


def table(title: str, runs: dict[str, list[dict]], extra: tuple[str, str]) -> dict[str, dict]:
    """Print the engines' medians (see :func:`median_of`) against DuckDB's; return them."""
    repeats = len(next(iter(runs.values())))
    print(f"\n{title}, median of {repeats} round(s) (load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(f"{'engine':<10}{'session s':>10}{'load s':>8}{extra[1]:>9}{'timed s':>9}{'vs duckdb':>10}"
          f"{'peak RSS':>10}  rounds s")
    medians = {engine: median_of(rounds) for engine, rounds in runs.items()}
    base = medians["duckdb"]["seconds"]
    for engine, figures in medians.items():
        print(f"{engine:<10}{cell(figures, 'session_s'):>10}{cell(figures, 'load_s')}{cell(figures, extra[0]):>9}"
              f"{figures['seconds']:>9.2f}{figures['seconds'] / base:>9.1f}x{figures['peak'] / GIB:>8.2f} G  "
              + " ".join(f"{seconds:.2f}" for seconds in figures["rounds"]))
    sparks = [e for e in medians if e.startswith("local")]
    if len(sparks) == 2:
        one, two = (medians[e]["seconds"] for e in sparks)
        print(f"Spark local[1] -> local[2]: {one / two:.2f}x faster with the second core (medians)")
    return medians


def in_rounds(target, engines: list[str], data: Path, work: Path, repeats: int) -> dict[str, list[dict]]:
    """Every engine once per round, each run in a new process; the rounds interleave the engines so a change
    in the machine's load falls on all of them alike."""
    runs: dict[str, list[dict]] = {engine: [] for engine in engines}
    for round_ in range(repeats):
        for engine in engines:
            runs[engine].append(in_fresh_process(target, engine, str(data), str(work), round_))
            print(f"  round {round_ + 1}/{repeats} {engine}: {runs[engine][-1]['seconds']:.2f} s "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-dbt", action="store_true", help="the point-in-time join only")
    parser.add_argument("--skip-join", action="store_true", help="the dbt build only")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs every engine once in a new process")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    engines = ["duckdb", *(e for e in args.engines if e != "duckdb")]  # DuckDB is the baseline: always run
    print(f"machine: {describe_machine()}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="fti-bench-spark-") as tmp:
        work = Path(tmp)
        if not args.skip_join:
            data = work / "pit.duckdb"
            seconds = pit_join.generate(data, SPINE_ROWS, FEATURE_ROWS, ENTITIES)
            print(f"point-in-time join: spine {SPINE_ROWS:,} rows x 2 feature tables of {FEATURE_ROWS:,} rows, "
                  f"{ENTITIES:,} entities, TTL {pit_join.TTL_DAYS['f1']} and {pit_join.TTL_DAYS['f2']} days "
                  f"(generated in {seconds:.1f} s)")
            runs = in_rounds(pit_child, engines, data, work, args.repeat)
            table("point-in-time join to Arrow (timed: the second run in the process)", runs, ("first_s", "first s"))
            answers = {(f["rows"], f["digest"]) for rounds in runs.values() for f in rounds}
            agree = len(answers) == 1 and next(iter(answers))[0] == SPINE_ROWS
            ok &= agree
            print(f"all engines and rounds agree (row count and hash of row_id + features): "
                  f"{'yes' if agree else 'NO'}")
        if not args.skip_dbt:
            landed = month_of_flights(work)
            runs = in_rounds(dbt_child, engines, landed, work, args.repeat)
            medians = table(f"dbt build --selector spark, 2013-01-01 .. {MONTH_END} from empty (timed: the build)",
                            runs, ("tests_s", "tests s"))
            for engine, figures in medians.items():
                print(f"  {engine}: {runs[engine][0]['nodes']} nodes, models {figures['models_s']:.1f} s, "
                      f"tests {figures['tests_s']:.1f} s")
            counts = [f["rows"] for rounds in runs.values() for f in rounds]
            same = all(c == counts[0] for c in counts)
            ok &= same
            print(f"same row count in every feature and label table on every engine and round "
                  f"({sum(counts[0].values()):,} rows in {len(counts[0])} tables): {'yes' if same else 'NO'}")
    return 0 if ok else 1


def month_of_flights(work: Path) -> Path:
    """January 2013 landed in a DuckDB home (the dbt build's input on every engine); its warehouse file."""
    from examples.flights.loader import land_flights
    from models_ml.core.settings import load_settings
    from models_ml.offline.store import opened

    settings = load_settings(work / DUCKDB_HOME)
    settings.ensure_home()
    with opened(settings) as store:
        land_flights(store, MONTH_END, work / "cache")
    return settings.warehouse_path


if __name__ == "__main__":
    sys.exit(main())
