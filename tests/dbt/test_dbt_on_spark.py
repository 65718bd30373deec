"""The dbt project on Spark (profiles.yml's `spark` target: dbt-spark's session method, local[2]) builds the
flights domain into the same rows as on DuckDB, and its day-by-day incremental builds equal one full refresh.

Ten days of real flights land in a DuckDB home one day at a time (the project's loader; landing is
DuckDB's job), and the DuckDB build of the domain is the reference. The Spark side runs in a child process
(`python <this file> <work dir>`): a local session's warehouse and metastore are fixed for the life of the
JVM, and other modules start sessions of their own homes, so one process per home is the rule (the Spark
offline store refuses a second). The child starts the session from profiles.yml's own parameters, copies the
raw rows landed through each day into Spark's `raw` tables, and runs dbt in-process against the spark target:
days 1-8 in one build, then day 9 (`dbt run`) and day 10 (`dbt build`: unit tests and every data test, on
the rows the run wrote) incrementally, then a full refresh of the published tables. It writes each state of
every table to Parquet, instants as epoch microseconds (Python would read a Spark timestamp in its own zone).
The test compares them as multisets: floats to 1e-9, everything else exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:  # the child process runs this file as a script
    sys.path.insert(0, str(TESTS_DIR))

from fti_testing import land, ticking_clock  # noqa: E402

from models_ml.core.settings import PROJECT_ROOT, Settings, load_settings  # noqa: E402

FIRST_DAY, FIRST_BUILD_THROUGH, LAST_DAY = dt.date(2013, 1, 1), dt.date(2013, 1, 8), dt.date(2013, 1, 10)
RAW_TABLES = ("flights", "weather", "schedule", "planes", "airlines", "airports")
# The flights domain on Spark (dbt_project/selectors.yml: fraud and churn build on DuckDB only).
SELECTOR = ["--selector", "spark"]
PUBLISHED = ["features", "labels", "spines"]  # the schemas of the published tables, fully refreshed last
STAGING = ["staging.stg_nycflights__flights", "staging.stg_nycflights__schedule",
           "staging.stg_nycflights__weather", "staging.stg_nycflights__planes",
           "staging.stg_nycflights__airlines", "staging.stg_nycflights__airports"]
QUARANTINE = "quarantine.quarantined_rows__nycflights"
# Spark's storage partition of a windowed feature group (dbt_project/macros/windowed_incremental.sql)
PARTITION = "event_date"
CHILD_TIMEOUT_SECONDS = 1500


def spark_profile_parameters(home: Path) -> dict[str, str]:
    """The `spark` target's server_side_parameters as dbt renders them for FTI_HOME=`home`."""
    import jinja2
    import yaml

    profile = yaml.safe_load((PROJECT_ROOT / "profiles.yml").read_text())
    parameters = profile["fti"]["outputs"]["spark"]["server_side_parameters"]
    env = {**os.environ, "FTI_HOME": str(home)}
    return {key: jinja2.Template(str(value)).render(env_var=lambda name, default=None: env.get(name, default))
            for key, value in parameters.items()}


def test_the_spark_target_starts_the_session_the_spark_store_starts(tmp_path):
    """dbt's session and the offline store's are one (getOrCreate): whichever starts first sets it up."""
    pytest.importorskip("pyspark")
    from models_ml.offline.spark_store import session_config

    settings = load_settings(tmp_path / "home")
    assert spark_profile_parameters(settings.home) == session_config(settings)


# ---------------------------------------------------------------------------------------------------------
# The Spark side (child process)


def _spark_session(home: Path):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_profile_parameters(home).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _append_raw(session, duckdb_warehouse: Path, after_micros: int | None, through_micros: int) -> None:
    """Append the raw rows landed in (after, through] (by `_loaded_at`) to Spark's raw tables."""
    import duckdb

    session.sql("create database if not exists raw")
    lower = f"and epoch_us(_loaded_at) > {after_micros}" if after_micros is not None else ""
    with duckdb.connect(str(duckdb_warehouse), read_only=True) as con:
        for table in RAW_TABLES:
            rows = con.execute(f"select * from raw.{table} where epoch_us(_loaded_at) <= {through_micros} {lower}"
                               ).to_arrow_table()
            if rows.num_rows:
                session.createDataFrame(rows).write.mode("append").format("parquet").saveAsTable(f"raw.{table}")


def _dump(session, relation: str, path: Path) -> dict:
    """`relation`'s rows as Parquet, instants as epoch microseconds, without the partition column (checked
    here against the event time it is the UTC day of)."""
    import pyarrow.parquet as pq
    from pyspark.sql import types as T

    frame = session.table(relation)
    instants = [f.name for f in frame.schema.fields if isinstance(f.dataType, T.TimestampType)]
    facts = {"partitioned": PARTITION in frame.columns, "columns": [c for c in frame.columns if c != PARTITION]}
    if facts["partitioned"]:
        facts["misplaced"] = frame.where(f"{PARTITION} is distinct from to_date(event_at)").count()
        facts["partitions"] = session.sql(f"show partitions {relation}").count()
    selected = [f"unix_micros(`{c}`) as `{c}`" if c in instants else f"`{c}`" for c in facts["columns"]]
    pq.write_table(frame.selectExpr(*selected).toArrow(), path)
    return facts


def build_on_spark(work: Path) -> None:
    """The child process: the Spark home's builds and their dumps (see the module docstring)."""
    import pyarrow.parquet as pq

    from models_ml.definitions.dbt_project import run_dbt

    plan = json.loads((work / "plan.json").read_text())
    settings = dataclasses.replace(load_settings(work / "spark-home"), dbt_target="spark")
    settings.ensure_home()
    os.environ["FTI_HOME"] = str(settings.home)
    session = _spark_session(settings.home)
    report: dict = {"runs": [], "tables": {}}

    def dbt(args: list[str], dbt_vars: dict | None = None) -> None:
        run = run_dbt(settings, args, dbt_vars)
        failed = [f"{o.resource_type} {o.name}: {o.status} {o.message}" for o in run.failed()]
        report["runs"].append({"args": args, "seconds": round(run.seconds, 1), "success": run.success,
                               "failed": failed, "exception": run.exception,
                               "nodes": dict(Counter(o.resource_type for o in run.outcomes))})
        (work / "report.json").write_text(json.dumps(report, indent=1))
        if not run.success or failed:
            raise SystemExit(f"dbt {' '.join(args)} failed on Spark: {run.exception} {failed}")

    def dump(state: str, relations: list[str]) -> None:
        (work / state).mkdir()
        for relation in relations:
            report["tables"][f"{state}/{relation}"] = _dump(session, relation, work / state / f"{relation}.parquet")

    previous = None
    for day, cutoff in plan["cutoffs"]:  # days 8, 9 and 10: the first build, then one day at a time
        _append_raw(session, Path(plan["duckdb_warehouse"]), previous, cutoff)
        previous = cutoff
        if day != plan["last_day"]:
            dbt(["run", *SELECTOR])
        else:  # an incremental build with its tests on the rows it wrote, as the feature pipeline runs it
            dbt(["build", *SELECTOR], {"fti_test_written_window": True})
    dump("incremental", plan["published"] + STAGING + [QUARANTINE])
    dbt(["run", "--select", *(f"{schema}.flights" for schema in PUBLISHED), "--full-refresh"])
    dump("full_refresh", plan["published"])
    report["watermark_rows"] = session.table("audit.test_watermarks").count()
    (work / "report.json").write_text(json.dumps(report, indent=1))
    assert all(pq.read_metadata(work / "full_refresh" / f"{r}.parquet").num_rows for r in plan["published"])


# ---------------------------------------------------------------------------------------------------------
# The test (parent process)


def _duckdb_rows(settings: Settings, relation: str, columns: list[str]) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        types = dict(con.execute(f"select column_name, column_type from (describe {relation})").fetchall())
        selected = ", ".join(f"epoch_us({c})" if types[c].startswith("TIMESTAMP") else c for c in columns)
        return con.execute(f"select {selected} from {relation}").fetchall()


def _duckdb_columns(settings: Settings, relation: str) -> list[str]:
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return [row[0] for row in con.execute(f"select column_name from (describe {relation})").fetchall()]


def _parquet_rows(path: Path, columns: list[str]) -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns)
    return list(zip(*(table.column(c).to_pylist() for c in columns))) if table.num_rows else []


def _same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def multiset_differences(left: list[tuple], right: list[tuple]) -> list[tuple]:
    """Rows of either that the other lacks, matching floats to 1e-9 (rows are ordered by their exact
    columns first, floats rounded, so equal multisets line up row for row)."""
    def key(row):
        return tuple((0, "") if v is None else (1, round(v, 6)) if isinstance(v, float) else (1, str(v)) for v in row)

    left, right = sorted(left, key=key), sorted(right, key=key)
    different = [(a, b) for a, b in zip(left, right) if not all(_same_value(x, y) for x, y in zip(a, b))]
    if len(left) != len(right):
        different.append((f"{len(left)} rows", f"{len(right)} rows"))
    return different


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The DuckDB reference home and the Spark child's dumps and report."""
    pytest.importorskip("pyspark")
    pytest.importorskip("dbt.adapters.spark")
    from models_ml.definitions.catalog import load_catalog
    from models_ml.features.dbt_runner import build
    from models_ml.features.pipeline import published_relations
    from models_ml.offline.store import opened

    work = tmp_path_factory.mktemp("dbt-on-spark")
    duck = load_settings(work / "duckdb-home")
    clock, cutoffs, day = ticking_clock(), [], FIRST_DAY
    while day <= LAST_DAY:
        land(duck, day, clock, start=FIRST_DAY)
        with opened(duck, read_only=True) as store:
            (cutoff,) = store.execute("select epoch_us(max(loaded_at)) from raw._landed_batches")[0]
        if day >= FIRST_BUILD_THROUGH:
            cutoffs.append([day.isoformat(), int(cutoff)])
        day += dt.timedelta(days=1)
    build(duck, ["build", *SELECTOR])
    with opened(duck, read_only=True) as store:
        built_relations = {f"{schema}.{name}" for schema, name in store.relations()}
    published = [r for r in published_relations(load_catalog(duck), domains=["flights"]) if r in built_relations]
    (work / "plan.json").write_text(json.dumps({
        "duckdb_warehouse": str(duck.warehouse_path), "cutoffs": cutoffs, "published": published,
        "last_day": LAST_DAY.isoformat(),
    }))
    env = {**os.environ, "FTI_HOME": str(work / "spark-home"), "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.run([sys.executable, __file__, str(work)], cwd=work, env=env, capture_output=True, text=True,
                           timeout=CHILD_TIMEOUT_SECONDS)
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else {}
    if child.returncode != 0:
        pytest.fail(f"the Spark builds failed (exit {child.returncode}): {report.get('runs')}\n"
                    f"{child.stderr[-6000:]}")
    return duck, work, published, report


@pytest.mark.slow
def test_every_spark_build_passes_its_tests_and_partitions_windowed_groups_by_event_day(built):
    duck, work, published, report = built
    runs = report["runs"]
    assert [r["args"][0] for r in runs] == ["run", "run", "build", "run"]
    assert runs[2]["nodes"].get("unit_test", 0) >= 4 and runs[2]["nodes"].get("test", 0) >= 50, runs[2]
    windowed = [r for r in published if r.startswith("features.") and "plane__attributes" not in r]
    assert len(windowed) == 5
    for state in ("incremental", "full_refresh"):
        for relation in published:
            facts = report["tables"][f"{state}/{relation}"]
            assert facts["partitioned"] == (relation in windowed), relation
            if facts["partitioned"]:
                # each row in its event day's partition; ten days of flights reach over at least ten days
                assert facts["misplaced"] == 0 and facts["partitions"] >= 10, (relation, facts)
    assert report["watermark_rows"] >= 2 * len(windowed)  # one per windowed group and incremental run


@pytest.mark.slow
def test_spark_full_refresh_builds_the_same_rows_as_duckdb(built):
    duck, work, published, report = built
    assert len(published) == 8, published  # six feature group versions, the label and the inference spine
    for relation in published:
        columns = _duckdb_columns(duck, relation)
        assert report["tables"][f"full_refresh/{relation}"]["columns"] == columns, relation
        expected = _duckdb_rows(duck, relation, columns)
        assert expected, relation
        assert multiset_differences(_parquet_rows(work / "full_refresh" / f"{relation}.parquet", columns),
                                    expected) == [], relation


@pytest.mark.slow
def test_spark_daily_incremental_builds_equal_its_full_refresh(built):
    duck, work, published, report = built
    for relation in published:
        columns = report["tables"][f"full_refresh/{relation}"]["columns"]
        daily = _parquet_rows(work / "incremental" / f"{relation}.parquet", columns)
        assert daily and multiset_differences(daily, _parquet_rows(work / "full_refresh" / f"{relation}.parquet",
                                                                   columns)) == [], relation


@pytest.mark.slow
def test_spark_staging_and_quarantine_hold_the_same_rows_as_duckdb(built):
    """Staging is typed and validated alike; a quarantined row's `record` is each engine's JSON text of the
    raw row (instants are written differently), so the quarantine is compared without it."""
    duck, work, published, report = built
    for relation in [*STAGING, QUARANTINE]:
        columns = [c for c in _duckdb_columns(duck, relation) if c != "record"]
        assert set(columns) <= set(report["tables"][f"incremental/{relation}"]["columns"]), relation
        spark_rows = _parquet_rows(work / "incremental" / f"{relation}.parquet", columns)
        assert multiset_differences(spark_rows, _duckdb_rows(duck, relation, columns)) == [], relation


if __name__ == "__main__":
    build_on_spark(Path(sys.argv[1]))
