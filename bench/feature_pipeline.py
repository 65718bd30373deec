"""Benchmark: a full refresh of a domain's feature pipeline vs. one incremental day, as the pipeline runs them.

For each domain (flights: 2013; fraud with --fraud: 2.1M transactions over 120 days) it times, in the same
run: a full refresh of the whole period (every test reads whole tables), and one day landed on top of
everything before it (flights: 1 December; fraud: the last day of transactions), built three times from
copies of the same warehouse: as a build after a failed run (whole tables tested, every unit test run); as
a daily run after a successful one on the same project files that builds the whole domain (only the
rows the run wrote are tested, and uniqueness on the keys they have, dbt macros/test_window.sql; on
DuckDB the row rules are checked inside the models that write their rows, macros/row_checks.sql; no
unit test), the daily run before
models_ml.features.pipeline.changed_by_landing; and as the daily run the pipeline runs now, which also
leaves out what only raw tables with nothing landed since feed (and the views). Each build is the command
the pipeline runs (models_ml.features.pipeline.dbt_build_command) on the domain's selection. Last, that
daily run's command with dbt's `--empty` (every ref and source reads no rows): what dbt itself costs for
the same nodes, statements and checkpoint with nothing to read, the floor under any change to the SQL. Prints wall
seconds, model SQL seconds, test seconds (data and unit tests), dbt's own seconds (wall less every
node's), the nodes run, the ratios incremental / full and the load average; `--top N` also lists the
daily run's N slowest nodes.
Targets: <= 10 % on flights, <= 5 % on fraud.

    .venv/bin/python bench/feature_pipeline.py [--workdir DIR] [--fraud] [--top N]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import describe_machine  # noqa: E402
from examples.flights.loader import LAST_DAY, land_flights  # noqa: E402
from examples.fraud.generator import FraudConfig  # noqa: E402
from examples.fraud.loader import land_fraud  # noqa: E402
from models_ml.core.settings import Settings, load_settings  # noqa: E402
from models_ml.definitions.catalog import load_catalog  # noqa: E402
from models_ml.definitions.dbt_project import DbtRun  # noqa: E402
from models_ml.features.dbt_runner import build  # noqa: E402
from models_ml.features.pipeline import (  # noqa: E402
    BuildScope,
    FeaturePipelineRun,
    build_scope,
    dbt_build_command,
    landed_state,
    record_run,
)
from models_ml.offline.store import opened  # noqa: E402

Lander = Callable[..., object]


def land(settings: Settings, lander: Lander, through: dt.date, cache: Path) -> int:
    with opened(settings) as store:
        return lander(store, through, cache).total_rows


def seconds(run: DbtRun, *kinds: str) -> float:
    return sum(o.execution_time for o in run.outcomes if o.resource_type in kinds)


def timed(settings: Settings, select: str, full_refresh: bool, scope: BuildScope,
          extra: tuple[str, ...] = ()) -> tuple[float, DbtRun]:
    args, dbt_vars = dbt_build_command(select, full_refresh, scope)
    args += extra
    build(settings, ["parse"], dbt_vars)  # parse first, so no timing pays for a (re)parse
    started = time.perf_counter()
    run = build(settings, args, dbt_vars)
    return time.perf_counter() - started, run


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(workdir: Path, domain: str, lander: Lander, last_day: dt.date, day: dt.date, top: int = 0) -> None:
    """Full refresh through `last_day`; one incremental day, `day`, on top of everything before it."""
    cache = workdir / "cache"
    full = load_settings(workdir / f"{domain}-full")
    select = load_catalog(full).domain(domain).dbt_selection
    raw_rows = land(full, lander, last_day, cache)
    loads = [load_average()]
    full_wall, full_run = timed(full, select, True, BuildScope())

    daily = load_settings(workdir / f"{domain}-daily")
    land(daily, lander, day - dt.timedelta(days=1), cache)
    build(daily, dbt_build_command(select, False, BuildScope())[0])
    state, tables = landed_state(daily)  # recorded as the pipeline records a successful run
    record_run(daily, FeaturePipelineRun(domain=domain, status="succeeded", raw_state=state, raw_tables=tables,
                                         finished_at=dt.datetime.now(dt.timezone.utc)))
    rows: list[tuple[str, int, float, DbtRun]] = [(f"full refresh, {domain}", raw_rows, full_wall, full_run)]
    for label in ("after a failure", "daily, whole domain", "daily", "daily, no rows read"):
        home = workdir / f"{domain}-daily-{label.replace(' ', '-').replace(',', '')}"
        shutil.copytree(daily.home, home)
        settings = load_settings(home)
        day_rows = land(settings, lander, day, cache)
        scope = build_scope(settings, select)  # the pipeline's own choice after that successful run
        if label == "after a failure":
            scope = BuildScope()
        elif label == "daily, whole domain":
            scope = dataclasses.replace(scope, fed_by_new_data=None)
        loads.append(load_average())
        wall, run = timed(settings, select, False, scope, ("--empty",) if label.endswith("no rows read") else ())
        rows.append((f"+{day:%m-%d}, {label}", day_rows, wall, run))
    loads.append(load_average())

    print(f"\n{domain}: load average (1, 5, 15 min) before each build and after: {' | '.join(loads)}")
    print(f"{'run':<32}{'raw rows':>10}{'wall s':>9}{'models s':>10}{'tests s':>9}{'dbt s':>7}"
          f"{'models':>7}{'tests':>7}{'unit':>6}{'/ full':>8}")
    for label, count, wall, run in rows:
        tests = sum(1 for o in run.outcomes if o.resource_type == "test")
        units = sum(1 for o in run.outcomes if o.resource_type == "unit_test")
        print(f"{label:<32}{count:>10,}{wall:>9.2f}{seconds(run, 'model'):>10.2f}"
              f"{seconds(run, 'test', 'unit_test'):>9.2f}{wall - run.node_seconds():>7.2f}{len(run.models()):>7}"
              f"{tests:>7}{units:>6}"
              f"{wall / full_wall:>8.1%}")
    if top:
        daily_run = rows[-2][3]  # the daily run that reads its rows
        print("slowest nodes of the daily run (seconds; the same node in the full refresh):")
        in_full = {o.unique_id: o.execution_time for o in full_run.outcomes}
        for o in sorted(daily_run.outcomes, key=lambda o: -o.execution_time)[:top]:
            print(f"  {o.execution_time:6.2f} {in_full.get(o.unique_id, float('nan')):7.2f}  {o.unique_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--fraud", action="store_true", help="also measure the fraud data (slower)")
    parser.add_argument("--top", type=int, default=0, help="list the daily run's N slowest nodes")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fti-bench-"))
    print(f"machine: {describe_machine()}")
    try:
        measure(workdir, "flights", land_flights, LAST_DAY, dt.date(2013, 12, 1), args.top)  # a day on 11 months
        if args.fraud:
            last = (FraudConfig().end_at - dt.timedelta(days=1)).date()  # the last day of transactions
            measure(workdir, "fraud", land_fraud, last, last, args.top)
    finally:
        if args.workdir is None:  # a workdir of its own (about 1 GB per domain) is removed; a given one is kept
            shutil.rmtree(workdir, ignore_errors=True)
    print("\ntargets: the daily run <= 10 % of a full refresh on flights, <= 5 % on fraud; 'no rows read' is"
          " dbt's own cost for the daily run's nodes")


if __name__ == "__main__":
    main()
