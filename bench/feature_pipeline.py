"""Benchmark: a full refresh of a domain's feature pipeline vs. one incremental day, as the pipeline runs them.

For each domain (flights: 2013; fraud with --fraud: 2.1M transactions over 120 days) it times, in the same
run: a full refresh of the whole period (every test reads whole tables), and one day landed on top of
everything before it (flights: 1 December; fraud: the last day of transactions), built twice from copies of the same warehouse: once testing whole
tables (how every run tested before) and once testing only the feature rows the run wrote (what the
pipeline does when the domain's previous run succeeded; dbt macros/test_window.sql). Each build is the
domain's dbt selection, as `run_feature_pipeline` runs it. Prints wall seconds, model SQL seconds, test
seconds and the ratios incremental / full. Targets: <= 10 % on flights, <= 5 % on fraud.

    .venv/bin/python bench/feature_pipeline.py [--workdir DIR] [--fraud]
"""

from __future__ import annotations

import argparse
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
from models_ml.features.pipeline import TEST_WRITTEN_WINDOW_VAR  # noqa: E402
from models_ml.offline.store import opened  # noqa: E402

Lander = Callable[..., object]


def land(settings: Settings, lander: Lander, through: dt.date, cache: Path) -> int:
    with opened(settings) as store:
        return lander(store, through, cache).total_rows


def seconds(run: DbtRun, kind: str) -> float:
    return sum(o.execution_time for o in run.outcomes if o.resource_type == kind)


def timed(settings: Settings, args: list[str], dbt_vars: dict | None = None) -> tuple[float, DbtRun]:
    build(settings, ["parse"], dbt_vars)  # parse first, so no timing pays for a (re)parse
    started = time.perf_counter()
    run = build(settings, args, dbt_vars)
    return time.perf_counter() - started, run


def measure(workdir: Path, domain: str, lander: Lander, last_day: dt.date, day: dt.date) -> None:
    """Full refresh through `last_day`; one incremental day, `day`, on top of everything before it."""
    cache = workdir / "cache"
    full = load_settings(workdir / f"{domain}-full")
    select = ["--select", *load_catalog(full).domain(domain).dbt_selection.split()]
    raw_rows = land(full, lander, last_day, cache)
    full_wall, full_run = timed(full, ["build", *select, "--full-refresh"])

    daily = load_settings(workdir / f"{domain}-daily")
    land(daily, lander, day - dt.timedelta(days=1), cache)
    build(daily, ["build", *select])
    rows: list[tuple[str, int, float, DbtRun]] = [(f"full refresh, {domain}", raw_rows, full_wall, full_run)]
    for label, dbt_vars in (("whole tables", None), ("rows written", {TEST_WRITTEN_WINDOW_VAR: True})):
        home = workdir / f"{domain}-daily-{label.replace(' ', '-')}"
        shutil.copytree(daily.home, home)
        settings = load_settings(home)
        day_rows = land(settings, lander, day, cache)
        wall, run = timed(settings, ["build", *select], dbt_vars)
        rows.append((f"+{day:%m-%d}, tests: {label}", day_rows, wall, run))

    print(f"\n{domain}: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'run':<32}{'raw rows':>10}{'wall s':>9}{'models s':>10}{'tests s':>9}{'tests':>7}{'/ full':>8}")
    for label, count, wall, run in rows:
        tests = sum(1 for o in run.outcomes if o.resource_type == "test")
        print(f"{label:<32}{count:>10,}{wall:>9.2f}{seconds(run, 'model'):>10.2f}{seconds(run, 'test'):>9.2f}"
              f"{tests:>7}{wall / full_wall:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--fraud", action="store_true", help="also measure the fraud data (slower)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fti-bench-"))
    print(f"machine: {describe_machine()}")
    measure(workdir, "flights", land_flights, LAST_DAY, dt.date(2013, 12, 1))  # one day on eleven months
    if args.fraud:
        last = (FraudConfig().end_at - dt.timedelta(days=1)).date()  # the last day of transactions
        measure(workdir, "fraud", land_fraud, last, last)
    print("\ntargets: +1 day with rows-written tests <= 10 % of a full refresh on flights, <= 5 % on fraud")


if __name__ == "__main__":
    main()
