"""A domain's landing inbox: raw batches dropped as files by processes that must not open the warehouse.

A DuckDB warehouse admits one writing process, and the feature pipeline holds it for minutes; so a process
that produces raw rows while it runs (the streaming consumer) writes each batch as a Parquet file in
``FTI_HOME/landing/<domain>/``, atomically (a temporary file, fsynced, renamed into place), named
``<raw table>.<batch id>.parquet``. Every feature-pipeline run of the domain lands the pending files, in name
order, through the loader's append-only :func:`~models_ml.features.landing.land_batch` and deletes them; so
a file is landed once (the ledger skips a batch id it holds), and a batch written twice after a crash is
rewritten identically under the same name. Writers choose batch ids that sort in their order.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from models_ml.core.settings import Settings
from models_ml.features.landing import LandingReport, land_batch
from models_ml.offline.store import OfflineStore

SUFFIX = ".parquet"


def inbox_dir(settings: Settings, domain: str) -> Path:
    return settings.home / "landing" / domain


def drop_batch(directory: Path, table: str, batch_id: str, rows: pa.Table) -> Path | None:
    """Write one batch of ``raw.<table>`` rows into the inbox (nothing when empty); returns the file."""
    if rows.num_rows == 0:
        return None
    if "." in table or "/" in batch_id:
        raise ValueError(f"inbox batch {table!r}/{batch_id!r}: a table name has no '.', a batch id no '/'")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{table}.{batch_id}{SUFFIX}"
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(rows, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def pending_batches(directory: Path) -> list[Path]:
    """Files not landed yet, in name order (a half-written ``.tmp`` is not one)."""
    return sorted(directory.glob(f"*{SUFFIX}")) if directory.exists() else []


def land_inbox(store: OfflineStore, directory: Path) -> LandingReport:
    """Land every pending file and delete it (the caller holds the home)."""
    report = LandingReport()
    for path in pending_batches(directory):
        table, _, batch_id = path.name.removesuffix(SUFFIX).partition(".")
        report.batches.append(land_batch(store, table, batch_id, pq.read_table(path)))
        path.unlink()
    return report
