"""The hand-off from the stream to the batch path, which never makes the consumer open the warehouse.

Each micro-batch's raw rows go to the fraud domain's landing inbox (:mod:`models_ml.features.inbox`), one
file per raw table, batch id ``stream-<first entry>.<last entry>`` with the entry ids zero-padded so names
sort in stream order. The next fraud feature-pipeline run lands them (or ``fti stream land`` now). A batch
redelivered after a crash has the same entries, hence the same name: the file is rewritten identically, and
a file landed before is skipped by the landing ledger.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from models_ml.core.settings import Settings
from models_ml.features.inbox import drop_batch, inbox_dir

DOMAIN = "fraud"
# event kind -> raw table (the loader's names, so staging reads both alike)
RAW_TABLES = {"transaction": "fraud_transactions", "chargeback": "fraud_chargebacks"}


def handoff_dir(settings: Settings) -> Path:
    return inbox_dir(settings, DOMAIN)


def sortable_entry_id(entry_id: str) -> str:
    """``1700000000000-5`` -> ``01700000000000-0000000005``: names sort as the stream orders its entries."""
    milliseconds, _, sequence = entry_id.partition("-")
    return f"{int(milliseconds):014d}-{int(sequence or 0):010d}"


def write_handoff(directory: Path, kind: str, first_id: str, last_id: str, rows: pa.Table) -> Path | None:
    """Write one micro-batch's raw rows of one event kind (nothing when empty); returns the file."""
    batch_id = f"stream-{sortable_entry_id(first_id)}.{sortable_entry_id(last_id)}"
    return drop_batch(directory, RAW_TABLES[kind], batch_id, rows)
