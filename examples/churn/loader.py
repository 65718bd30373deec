"""Lands the generated subscription business into `raw` tables, one UTC day per batch (batch id: the ISO day).

* `raw.churn_customers`: a customer lands on the day it signed up (customers who subscribed before the
  period land with its first day);
* `raw.churn_usage`: each day's usage rows, by `usage_date`;
* `raw.churn_tickets`, `raw.churn_payments`, `raw.churn_cancellations`: by `opened_at`, `attempted_at`
  and `cancelled_at`.

Every batch goes through `models_ml.features.landing.land_batch`, so landing a day twice is a no-op; every
table gets a batch for every day, empty or not. The generator's `dirty_kind` never lands. Columns land
typed, as the event streams carry them; staging still validates.

The dataset (generator config) is recorded in `raw.churn_dataset` with the first landing, and later calls
continue it: a scheduled run needs no parameters, and a home never mixes two datasets. The generated tables
are written once per config as Parquet under `cache_dir`, sorted by time in small row groups, so a day's
batch reads only its own rows.

The feature pipeline calls the module-level `land_through` and `next_unlanded_day` (the loader contract).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from examples.churn.generator import MICROS_PER_DAY, ChurnConfig, generate
from models_ml.features.landing import (
    RAW_SCHEMA,
    Clock,
    LandingReport,
    land_batch,
    landed_batch_ids,
    utc_now,
)
from models_ml.offline.store import OfflineStore

RAW_TABLES = {
    "customers": "churn_customers",
    "usage": "churn_usage",
    "tickets": "churn_tickets",
    "payments": "churn_payments",
    "cancellations": "churn_cancellations",
}
# table -> the column it is batched by (a UTC timestamp, or the UTC date of usage)
BATCHED_BY = {
    "customers": "signup_at",
    "usage": "usage_date",
    "tickets": "opened_at",
    "payments": "attempted_at",
    "cancellations": "cancelled_at",
}
GROUND_TRUTH = ("dirty_kind",)
DATASET_TABLE = "churn_dataset"
DATASET_BATCH = "reference"
_EPOCH_DATE = dt.date(1970, 1, 1)


class DatasetMismatch(ValueError):
    """The warehouse already holds a different churn dataset."""


def dataset_files(config: ChurnConfig, cache_dir: Path) -> dict[str, Path]:
    """The generated tables as Parquet files, written once per config (atomically) under `cache_dir`."""
    directory = Path(cache_dir) / f"churn-{config.fingerprint()}"
    files = {name: directory / f"{name}.parquet" for name in RAW_TABLES}
    if all(path.exists() for path in files.values()):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in generate(config).tables().items():
        tmp = files[name].with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=16_384)
        tmp.replace(files[name])
    return files


def recorded_dataset(store: OfflineStore) -> ChurnConfig | None:
    """The dataset this warehouse continues, or None before the first landing."""
    if not store.exists(RAW_SCHEMA, DATASET_TABLE):
        return None
    text = store.scalar(f"select dataset from {RAW_SCHEMA}.{DATASET_TABLE} limit 1")
    return None if text is None else ChurnConfig.from_dict(json.loads(text)["config"])


def _resolve(store: OfflineStore, config: ChurnConfig | None, clock: Clock) -> ChurnConfig:
    recorded = recorded_dataset(store)
    if recorded is None:
        chosen = config or ChurnConfig()
        payload = json.dumps({"config": chosen.as_dict()}, sort_keys=True)
        land_batch(store, DATASET_TABLE, DATASET_BATCH, pa.table({"dataset": pa.array([payload], pa.string())}),
                   clock=clock)
        return chosen
    if config is not None and config != recorded:
        raise DatasetMismatch(f"this warehouse holds churn dataset {recorded}, not {config}")
    return recorded


def days(config: ChurnConfig) -> Iterator[dt.date]:
    """Every UTC day of the period, in order."""
    for offset in range(config.days):
        yield config.start + dt.timedelta(days=offset)


class _Generated:
    """The generated tables of one config, read once per landing call, cut into days in memory (each file is
    sorted by the time it is batched by, so a day is a contiguous slice)."""

    def __init__(self, files: dict[str, Path]):
        self.tables: dict[str, pa.Table] = {}
        self.times: dict[str, np.ndarray] = {}
        for name, path in files.items():
            schema = pq.read_schema(path)
            table = pq.read_table(path, columns=[c for c in schema.names if c not in GROUND_TRUTH])
            column = table[BATCHED_BY[name]].combine_chunks()
            if pa.types.is_date(column.type):  # a day number; as microseconds of its midnight
                micros = pc.cast(column, pa.int32()).to_numpy().astype(np.int64) * MICROS_PER_DAY
            else:
                micros = pc.cast(column, pa.int64()).to_numpy()
            self.tables[name], self.times[name] = table, micros

    def day(self, name: str, day: dt.date, first: bool) -> pa.Table:
        """The rows of `day` (UTC); the first day also takes every earlier row (customers who subscribed
        before the period)."""
        start = (day - _EPOCH_DATE).days * MICROS_PER_DAY
        times = self.times[name]
        lower = 0 if first else int(np.searchsorted(times, start, side="left"))
        upper = int(np.searchsorted(times, start + MICROS_PER_DAY, side="left"))
        return self.tables[name].slice(lower, upper - lower)


def _check_day(through: dt.date) -> dt.date:
    if isinstance(through, dt.datetime):
        raise TypeError("churn lands whole UTC days: pass a datetime.date")
    return through


def land_churn(
    store: OfflineStore,
    through: dt.date,
    cache_dir: Path,
    *,
    config: ChurnConfig | None = None,
    clock: Clock = utc_now,
) -> LandingReport:
    """Land every day through the UTC day `through` (inclusive) that has not been landed yet.

    `config` (default: the recorded dataset, else `ChurnConfig()`) must match what this warehouse holds.
    """
    through = _check_day(through)
    config = _resolve(store, config, clock)
    report = LandingReport()
    landed = {name: landed_batch_ids(store, table) for name, table in RAW_TABLES.items()}
    pending = [day for day in days(config) if day <= through
               and any(day.isoformat() not in landed[name] for name in RAW_TABLES)]
    if not pending:
        return report
    generated = _Generated(dataset_files(config, cache_dir))
    for day in pending:
        batch_id = day.isoformat()
        for name, table in RAW_TABLES.items():
            if batch_id in landed[name]:
                continue
            rows = generated.day(name, day, first=day == config.start)
            report.batches.append(land_batch(store, table, batch_id, rows, clock=clock))
    return report


# The feature pipeline's interface to a domain's loader (see models_ml/features/pipeline.py).


def next_unlanded_day(store: OfflineStore) -> dt.date:
    """The first UTC day not landed yet (of the recorded dataset, else the default one); the day after the
    period once everything has landed."""
    config = recorded_dataset(store) or ChurnConfig()
    landed = {name: landed_batch_ids(store, table) for name, table in RAW_TABLES.items()}
    for day in days(config):
        if any(day.isoformat() not in landed[name] for name in RAW_TABLES):
            return day
    return config.last_day + dt.timedelta(days=1)


def land_through(store: OfflineStore, through: dt.date, cache_dir: Path,
                 clock: Clock = utc_now) -> LandingReport:
    """Land the recorded dataset (else the default one) through the end of UTC day `through`."""
    return land_churn(store, through, cache_dir, clock=clock)
