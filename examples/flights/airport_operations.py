"""A stand-in for another team's system: the airport operations team's daily capacity plan per New York
airport, written into *their own* DuckDB file (or a Parquet folder), never into fti's warehouse.

fti reads it in place as the external feature group ``fg_airport__operations``
(``dbt_project/models/features/flights/_flights__external.yml``). The plan for a day is published at
18:00 New York time the evening before and loaded by the team ten minutes later; it holds from the day's
start (``valid_from``, New York midnight, the group's event time, so a flight late in the evening never sees
tomorrow's plan). A runway closed for works (about one day in twelve, seeded) takes a runway, a quarter of
the hourly rate and some gates away.

    .venv/bin/python -m examples.flights.airport_operations            # FTI_HOME/upstream/airport_operations.duckdb
    .venv/bin/python -m examples.flights.airport_operations --path /srv/ops/airport_operations.duckdb
    .venv/bin/python -m examples.flights.airport_operations --path /srv/ops/capacity --format parquet

The file is replaced whole (written beside it, then renamed), so a reader sees the old plan or the new one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
DEFAULT_LOCATION = "upstream/airport_operations.duckdb"  # relative to FTI_HOME, as the source declares it
TABLE = "daily_capacity"
# airport -> (runways normally open, departures and arrivals per hour, gates)
AIRPORTS = {"EWR": (2, 78, 120), "JFK": (4, 90, 130), "LGA": (2, 70, 72)}


def capacity_plan(first: dt.date = FIRST_DAY, last: dt.date = LAST_DAY, seed: int = 13) -> pa.Table:
    """One row per airport and day in ``[first, last]``, the same rows for the same seed."""
    rows: dict[str, list] = {k: [] for k in ("airport_code", "operations_date", "valid_from", "published_at",
                                             "open_runways",
                                             "runway_rate_per_hour", "open_gates", "has_runway_works",
                                             "loaded_at")}
    generator = random.Random(seed)
    day = first
    while day <= last:
        evening_before = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(18), NEW_YORK).astimezone(UTC)
        midnight = dt.datetime.combine(day, dt.time(0), NEW_YORK).astimezone(UTC)
        for airport, (runways, rate, gates) in AIRPORTS.items():
            works = generator.random() < 1 / 12
            rows["airport_code"].append(airport)
            rows["operations_date"].append(day)
            rows["valid_from"].append(midnight)
            rows["published_at"].append(evening_before)
            rows["open_runways"].append(runways - 1 if works else runways)
            rows["runway_rate_per_hour"].append(round(rate * (0.75 if works else 1.0) * generator.uniform(0.95, 1.05)))
            rows["open_gates"].append(gates - generator.randint(4, 12) if works else gates - generator.randint(0, 3))
            rows["has_runway_works"].append(works)
            rows["loaded_at"].append(evening_before + dt.timedelta(minutes=10))
        day += dt.timedelta(days=1)
    return pa.table({
        **rows,
        "operations_date": pa.array(rows["operations_date"], pa.date32()),
        "valid_from": pa.array(rows["valid_from"], pa.timestamp("us", tz="UTC")),
        "published_at": pa.array(rows["published_at"], pa.timestamp("us", tz="UTC")),
        "open_runways": pa.array(rows["open_runways"], pa.int32()),
        "runway_rate_per_hour": pa.array(rows["runway_rate_per_hour"], pa.int32()),
        "open_gates": pa.array(rows["open_gates"], pa.int32()),
        "loaded_at": pa.array(rows["loaded_at"], pa.timestamp("us", tz="UTC")),
    })


def write_duckdb(rows: pa.Table, path: Path, table: str = TABLE) -> None:
    """``rows`` as ``main.<table>`` of a new DuckDB file at ``path``, swapped in by a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.unlink(scratch)  # DuckDB creates the file itself
    with duckdb.connect(scratch) as con:
        con.execute("set TimeZone = 'UTC'")
        con.register("plan", rows)
        con.execute(f'create table "{table}" as select * from plan')
    os.replace(scratch, path)


def write_parquet(rows: pa.Table, folder: Path) -> None:
    """``rows`` as one Parquet file per month under ``folder`` (each replaced by a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    months = pc.strftime(rows["operations_date"], "%Y-%m")
    for month in sorted(set(months.to_pylist())):
        part = rows.filter(pc.equal(months, month))
        target = folder / f"capacity_{month}.parquet"
        pq.write_table(part, target.with_suffix(".parquet.tmp"))
        os.replace(target.with_suffix(".parquet.tmp"), target)


def write_airport_operations(path: Path, *, first: dt.date = FIRST_DAY, last: dt.date = LAST_DAY, seed: int = 13,
                             format: str | None = None) -> int:
    """Write the plan to ``path`` (a DuckDB file, or a Parquet folder with ``format="parquet"`` or a path
    without a ``.duckdb`` suffix); returns the rows written."""
    rows = capacity_plan(first, last, seed)
    chosen = format or ("duckdb" if path.suffix in (".duckdb", ".db") else "parquet")
    (write_duckdb if chosen == "duckdb" else write_parquet)(rows, path)
    return rows.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, help=f"where to write (default: FTI_HOME/{DEFAULT_LOCATION})")
    parser.add_argument("--home", help="FTI_HOME (default: the environment's, else ./.fti)")
    parser.add_argument("--format", choices=["duckdb", "parquet"])
    parser.add_argument("--first", type=dt.date.fromisoformat, default=FIRST_DAY)
    parser.add_argument("--last", type=dt.date.fromisoformat, default=LAST_DAY)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if args.path is None:
        from models_ml.core.settings import load_settings

        args.path = load_settings(args.home).home / DEFAULT_LOCATION
    written = write_airport_operations(args.path, first=args.first, last=args.last, seed=args.seed,
                                       format=args.format)
    print(f"{written:,} rows of {TABLE} written to {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
