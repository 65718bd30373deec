"""Benchmark: what dbt itself costs per node on DuckDB, the floor under a daily feature-pipeline run.

A throwaway dbt project (in a temporary folder) of trivial nodes, built in-process with dbtRunner as the
pipeline builds (parsed first, so no timing pays for a parse): one one-row table with no test (dbt's
fixed cost per invocation), the same table with N `not_null` tests (each reads one row), and M one-row
incremental models (each a delete+insert of one row). Each build runs --repeat times; medians. The
per-node costs are then the slopes: (wall with the nodes - wall without) / nodes. Every SQL statement
reads or writes one row, so what they measure is dbt's own work per node (Jinja, contexts, events,
materialization), not the data's.

It prints the floor of a daily run at zero SQL cost with the node counts `bench/feature_pipeline.py` reports:
the daily run with a test node per row rule (flights: 10 models, 58 tests; fraud: 5 and 34), and the DuckDB
daily run, which checks the row rules inside the models (flights and fraud: 1 test node each; the checks'
own work is not in this floor), against the targets' budget for a full refresh (--flights-full /
--fraud-full seconds, from that benchmark).

    .venv/bin/python bench/dbt_node_cost.py [--tests 60] [--models 12] [--repeat 5]
                                            [--flights-full 15.0] [--fraud-full 28.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import describe_machine  # noqa: E402

def write_project(root: Path, tests: int, models: int) -> None:
    """`one_row` (a table) with `tests` not-null tests, and `models` incremental one-row models."""
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "node_cost", "version": "1.0", "config-version": 2, "profile": "node_cost",
        "flags": {"send_anonymous_usage_stats": False},
    }))
    columns = ", ".join(f"{i} as c{i}" for i in range(max(tests, 1)))
    (root / "models" / "one_row.sql").write_text(f"{{{{ config(materialized='table') }}}}\nselect {columns}\n")
    for i in range(models):
        (root / "models" / f"increment_{i}.sql").write_text(
            "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}\n"
            "select 1 as id\n")
    (root / "models" / "_tests.yml").write_text(yaml.safe_dump({"version": 2, "models": [{
        "name": "one_row", "columns": [{"name": f"c{i}", "data_tests": ["not_null"]} for i in range(tests)],
    }]}))
    (root / "profiles.yml").write_text(yaml.safe_dump({"node_cost": {"target": "dev", "outputs": {"dev": {
        "type": "duckdb", "path": str(root / "warehouse.duckdb"), "threads": 1}}}}))


def median_build(root: Path, select: list[str], repeat: int) -> float:
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    # the pipeline's flags (models_ml.definitions.dbt_project.run_dbt, dbt_build_command)
    common = ["--project-dir", str(root), "--profiles-dir", str(root), "--quiet", "--no-write-json",
              "--log-path", str(root / "logs"), "--log-level-file", "info"]
    dbtRunner().invoke(["parse", *common])
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = dbtRunner().invoke(["build", *select, *common])
        DuckDBConnectionManager.close_all_connections()  # as the pipeline does after each build
        walls.append(time.perf_counter() - started)
        if not result.success:
            raise SystemExit(f"the build of {select} failed: {result.exception}")
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=60)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--flights-full", type=float, default=15.0, help="a flights full refresh, seconds")
    parser.add_argument("--fraud-full", type=float, default=28.0, help="a fraud full refresh, seconds")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    with tempfile.TemporaryDirectory(prefix="fti-node-cost-") as folder:
        root = Path(folder)
        write_project(root, args.tests, args.models)
        median_build(root, ["--select", "increment_*"], 1)  # the incremental models exist: later runs increment
        fixed = median_build(root, ["--select", "one_row", "--exclude-resource-type", "test"], args.repeat)
        with_tests = median_build(root, ["--select", "one_row"], args.repeat)
        with_models = median_build(root, ["--select", "one_row", "increment_*", "--exclude-resource-type", "test"],
                                   args.repeat)
    per_test = (with_tests - fixed) / args.tests
    per_model = (with_models - fixed) / args.models
    print(f"\n{'build (medians of ' + str(args.repeat) + ')':<44}{'wall s':>8}")
    print(f"{'1 table, no test (fixed cost + 1 model)':<44}{fixed:>8.3f}")
    print(f"{f'1 table, {args.tests} not_null tests':<44}{with_tests:>8.3f}   {per_test * 1000:.1f} ms per test")
    print(f"{f'1 table, {args.models} incremental models':<44}{with_models:>8.3f}   "
          f"{per_model * 1000:.1f} ms per incremental model")
    print("\nfloor of a daily run at zero SQL cost (fixed + models x per model + tests x per test):")
    for domain, models, tests, full, target in (("flights", 10, 58, args.flights_full, 0.10),
                                                 ("fraud", 5, 34, args.fraud_full, 0.05)):
        floor = fixed + (models - 1) * per_model + tests * per_test
        checked = fixed + (models - 1) * per_model + per_test
        print(f"  {domain:<8} {models} models, {tests} tests: {floor:.2f} s = {floor / full:.1%} of a "
              f"{full:.1f} s full refresh (target {target:.0%}: {target * full:.2f} s); with the row rules "
              f"checked in the models (1 test node): {checked:.2f} s = {checked / full:.1%}")

if __name__ == "__main__":
    main()
