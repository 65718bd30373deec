"""The hand-off from the stream to the batch path, which never makes the consumer open the warehouse.

A DuckDB warehouse admits one writing process, and the feature pipeline holds it for minutes; so the
consumer writes each micro-batch's raw rows as a Parquet file in ``FTI_HOME/landing/stream/`` (atomically:
a temporary file renamed into place, fsynced), named by the first and last stream entry ids of the batch.
The next feature-pipeline run (holding the home) lands the files in stream order through the same
append-only step as the loader (:func:`models_ml.features.landing.land_batch`), batch id ``stream-<name>``,
and deletes them. A batch redelivered after a crash has the same entries, hence the same name: the file is
rewritten identically, and a file landed before is skipped by the landing ledger.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from models_ml.core.settings import Settings
from models_ml.features.landing import LandingReport, land_batch
from models_ml.offline.store import OfflineStore

# event kind -> raw table (the loader's names, so staging reads both alike)
RAW_TABLES = {"transaction": "fraud_transactions", "chargeback": "fraud_chargebacks"}


def handoff_dir(settings: Settings) -> Path:
    return settings.home / "landing" / "stream"


def entry_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def write_handoff(directory: Path, kind: str, first_id: str, last_id: str, rows: pa.Table) -> Path | None:
    """Write one batch's raw rows of one kind (nothing when empty); returns the file."""
    if rows.num_rows == 0:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}.{first_id}.{last_id}.parquet"
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(rows, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def pending_handoffs(directory: Path) -> list[Path]:
    """Files not landed yet, in stream order."""
    files = [p for p in directory.glob("*.parquet")] if directory.exists() else []
    return sorted(files, key=lambda p: (entry_order(p.name.split(".")[1]), p.name))


def land_handoffs(store: OfflineStore, directory: Path) -> LandingReport:
    """Land every pending file (the caller holds the home: the feature pipeline, or `fti stream land`)."""
    report = LandingReport()
    for path in pending_handoffs(directory):
        kind = path.name.split(".")[0]
        if kind not in RAW_TABLES:
            continue
        batch_id = "stream-" + path.name.removesuffix(".parquet").split(".", 1)[1]
        report.batches.append(land_batch(store, RAW_TABLES[kind], batch_id, pq.read_table(path)))
        path.unlink()
    return report
