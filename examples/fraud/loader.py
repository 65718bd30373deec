"""Lands the generated card transactions into `raw` tables in micro-batches, the way a payment stream arrives.

* `raw.fraud_cards` and `raw.fraud_merchants` (reference data) land once, in the batch `reference`;
* `raw.fraud_transactions` lands one period (a UTC day, or an hour) per batch, by `transaction_at`;
* `raw.fraud_chargebacks` lands one period per batch, by `reported_at`: a chargeback arrives when it is
  reported, days to weeks after its transaction, so periods continue `label_maturity_days` past the last
  transaction.

Every batch goes through `models_ml.features.landing.land_batch`, so landing a period twice is a no-op. The generator's
ground truth (`is_fraud`, `fraud_pattern`, `dirty_kind`) never lands: a bank only learns of fraud through
chargebacks. Columns land typed, as the (generated) event stream carries them; staging still validates.

The dataset (generator config and batch size) is recorded in `raw.fraud_dataset` with the first landing,
and later calls continue that dataset: a scheduled run needs no parameters, and a home never mixes two
datasets or two batch sizes (which would land the same transactions twice under different batch ids). The
generated tables are written once per config as Parquet under `cache_dir`, sorted by event time in small
row groups, so a batch reads only its own rows (a pyarrow dataset filter skips the other row groups).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from examples.fraud.generator import UTC, FraudConfig, generate
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
    "cards": "fraud_cards",
    "merchants": "fraud_merchants",
    "transactions": "fraud_transactions",
    "chargebacks": "fraud_chargebacks",
}
REFERENCE = ("cards", "merchants")
STREAMS = {"transactions": "transaction_at", "chargebacks": "reported_at"}  # table -> the time it is batched by
GROUND_TRUTH = ("is_fraud", "fraud_pattern", "dirty_kind")
DATASET_TABLE = "fraud_dataset"
REFERENCE_BATCH = "reference"

BatchSize = Literal["day", "hour"]
_STEP = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}


class DatasetMismatch(ValueError):
    """The warehouse already holds a different fraud dataset or batch size."""


def dataset_files(config: FraudConfig, cache_dir: Path) -> dict[str, Path]:
    """The generated tables as Parquet files, written once per config (atomically) under `cache_dir`."""
    directory = Path(cache_dir) / f"fraud-{config.fingerprint()}"
    files = {name: directory / f"{name}.parquet" for name in RAW_TABLES}
    if all(path.exists() for path in files.values()):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    data = generate(config)
    tables = {"cards": data.cards, "merchants": data.merchants, "transactions": data.transactions,
              "chargebacks": data.chargebacks}
    for name, table in tables.items():
        tmp = files[name].with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=16_384)
        tmp.replace(files[name])
    return files


def recorded_dataset(store: OfflineStore) -> tuple[FraudConfig, BatchSize] | None:
    """The dataset this warehouse continues, or None before the first landing."""
    if not store.exists(RAW_SCHEMA, DATASET_TABLE):
        return None
    text = store.scalar(f"select dataset from {RAW_SCHEMA}.{DATASET_TABLE} limit 1")
    if text is None:
        return None
    recorded = json.loads(text)
    return FraudConfig.from_dict(recorded["config"]), recorded["batch"]


def _resolve(store: OfflineStore, config: FraudConfig | None, batch: BatchSize | None,
             clock: Clock) -> tuple[FraudConfig, BatchSize]:
    recorded = recorded_dataset(store)
    if recorded is None:
        chosen = (config or FraudConfig(), batch or "day")
        if chosen[1] not in _STEP:
            raise ValueError(f"batch must be 'day' or 'hour', got {chosen[1]!r}")
        payload = json.dumps({"config": chosen[0].as_dict(), "batch": chosen[1]}, sort_keys=True)
        land_batch(store, DATASET_TABLE, REFERENCE_BATCH, pa.table({"dataset": pa.array([payload], pa.string())}),
                   clock=clock)
        return chosen
    if config is not None and config != recorded[0]:
        raise DatasetMismatch(f"this warehouse holds fraud dataset {recorded[0]}, not {config}")
    if batch is not None and batch != recorded[1]:
        raise DatasetMismatch(f"this warehouse lands fraud in {recorded[1]} batches, not {batch} batches")
    return recorded


def periods(config: FraudConfig, batch: BatchSize) -> Iterator[tuple[str, dt.datetime, dt.datetime]]:
    """(batch id, start, end) of every period, half-open, from the first transaction to the last chargeback."""
    step = _STEP[batch]
    start = config.start_at
    last = config.end_at + dt.timedelta(days=config.label_maturity_days)
    while start < last:
        batch_id = start.date().isoformat() if batch == "day" else start.strftime("%Y-%m-%dT%H")
        yield batch_id, start, start + step
        start += step


def _end_of(through: dt.date | dt.datetime) -> dt.datetime:
    """A date means through the end of that UTC day; a datetime is an exclusive end instant."""
    if isinstance(through, dt.datetime):
        if through.tzinfo is None:
            raise ValueError("through must be timezone-aware (UTC)")
        return through.astimezone(UTC)
    return dt.datetime(through.year, through.month, through.day, tzinfo=UTC) + dt.timedelta(days=1)


def _between(path: Path, time_column: str, start: dt.datetime, stop: dt.datetime,
             excluded: tuple[str, ...] = ()) -> pa.Table:
    """The rows of one generated file with ``start <= time_column < stop``, in file order."""
    dataset = ds.dataset(path, format="parquet")
    columns = [name for name in dataset.schema.names if name not in excluded]
    at = pa.timestamp("us", tz="UTC")
    window = (ds.field(time_column) >= pa.scalar(start, at)) & (ds.field(time_column) < pa.scalar(stop, at))
    return dataset.to_table(columns=columns, filter=window)


def land_fraud(
    store: OfflineStore,
    through: dt.date | dt.datetime,
    cache_dir: Path,
    *,
    config: FraudConfig | None = None,
    batch: BatchSize | None = None,
    clock: Clock = utc_now,
) -> LandingReport:
    """Land every period that ends by `through` and has not been landed yet, plus the reference tables.

    `config` and `batch` (default: the recorded dataset, else `FraudConfig()` in daily batches) must match
    what this warehouse already holds.
    """
    config, batch = _resolve(store, config, batch, clock)
    end = _end_of(through)
    report = LandingReport()
    landed = {name: landed_batch_ids(store, RAW_TABLES[name]) for name in RAW_TABLES}
    pending = [p for p in periods(config, batch) if p[2] <= end
               and any(p[0] not in landed[name] for name in STREAMS)]
    missing_reference = [name for name in REFERENCE if REFERENCE_BATCH not in landed[name]]
    if not pending and not missing_reference:
        return report
    files = dataset_files(config, cache_dir)
    for name in missing_reference:
        report.batches.append(land_batch(store, RAW_TABLES[name], REFERENCE_BATCH, pq.read_table(files[name]),
                                         clock=clock))
    for batch_id, start, stop in pending:
        for name, time_column in STREAMS.items():
            if batch_id in landed[name]:
                continue
            excluded = GROUND_TRUTH if name == "transactions" else ()
            rows = _between(files[name], time_column, start, stop, excluded)
            report.batches.append(land_batch(store, RAW_TABLES[name], batch_id, rows, clock=clock))
    return report


# The feature pipeline's interface to an example (see models_ml/features/pipeline.py).


def next_unlanded_day(store: OfflineStore) -> dt.date:
    """The UTC day of the first period not landed yet (the recorded dataset's, else the default one's)."""
    recorded = recorded_dataset(store)
    config, batch = recorded if recorded else (FraudConfig(), "day")
    landed = {name: landed_batch_ids(store, RAW_TABLES[name]) for name in STREAMS}
    last_start = config.start_at
    for batch_id, start, _ in periods(config, batch):
        if any(batch_id not in landed[name] for name in STREAMS):
            return start.date()
        last_start = start
    return (last_start + _STEP[batch]).date()


def land_through(store: OfflineStore, through: dt.date, cache_dir: Path,
                 clock: Clock = utc_now) -> LandingReport:
    """Land the recorded dataset (else the default one, daily) through the end of UTC day `through`."""
    return land_fraud(store, through, cache_dir, clock=clock)
