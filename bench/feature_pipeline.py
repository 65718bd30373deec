"""Benchmark: a full refresh of the feature pipeline over the whole year vs. one incremental day.

Prints rows per second and the ratio incremental / full, both for the whole `dbt build` (which includes
dbt's fixed start-up, parsing and ~60 tests) and for the SQL its models ran. Target: one incremental day
costs at most 5% of the full refresh. Also prints the feature tables' row counts on the full year.

    .venv/bin/python bench/feature_pipeline.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import describe_machine  # noqa: E402
from examples.flights.loader import LAST_DAY, land_flights  # noqa: E402
from models_ml.core.settings import Settings, load_settings  # noqa: E402
from models_ml.definitions.dbt_project import DbtRun  # noqa: E402
from models_ml.features.dbt_runner import build  # noqa: E402
from models_ml.features.pipeline import count_rows  # noqa: E402
from models_ml.offline.store import opened  # noqa: E402

ELEVEN_MONTHS = dt.date(2013, 11, 30)


def land(settings: Settings, through: dt.date, cache: Path) -> int:
    with opened(settings) as store:
        return land_flights(store, through, cache).total_rows


def model_seconds(run: DbtRun) -> float:
    return sum(o.execution_time for o in run.models())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fti-bench-"))
    cache = workdir / "cache"
    print(f"machine: {describe_machine()}")

    full = load_settings(workdir / "full")
    raw_rows = land(full, LAST_DAY, cache)
    build(full, ["parse"])  # parse once, so neither timing below pays for the first parse
    started = time.perf_counter()
    full_run = build(full, ["build", "--full-refresh"])
    full_wall = time.perf_counter() - started

    daily = load_settings(workdir / "daily")
    land(daily, ELEVEN_MONTHS, cache)
    build(daily, ["build"])
    day_rows = land(daily, ELEVEN_MONTHS + dt.timedelta(days=1), cache)
    started = time.perf_counter()
    day_run = build(daily, ["build"])
    day_wall = time.perf_counter() - started

    print()
    print(f"{'run':<34}{'raw rows':>10}{'wall s':>9}{'rows/s':>10}{'models s':>10}")
    print(f"{'full refresh, 2013 (365 days)':<34}{raw_rows:>10,}{full_wall:>9.2f}{raw_rows / full_wall:>10,.0f}"
          f"{model_seconds(full_run):>10.2f}")
    print(f"{'incremental, +1 day on 11 months':<34}{day_rows:>10,}{day_wall:>9.2f}{day_rows / day_wall:>10,.0f}"
          f"{model_seconds(day_run):>10.2f}")
    print()
    print(f"incremental / full, whole dbt build: {day_wall / full_wall:6.1%}  (target <= 5%)")
    print(f"incremental / full, model SQL only:  {model_seconds(day_run) / model_seconds(full_run):6.1%}")
    print(f"dbt fixed cost (wall minus all node SQL) in the incremental run: "
          f"{day_wall - day_run.node_seconds():.2f} s")

    print()
    print("feature tables on the full year:")
    counts, quarantined = count_rows(full)
    for relation, count in counts.items():
        print(f"  {relation:<48}{count:>10,}")
    print("quarantined rows on the full year:")
    for key, count in quarantined.items():
        print(f"  {key:<48}{count:>10,}")


if __name__ == "__main__":
    main()
