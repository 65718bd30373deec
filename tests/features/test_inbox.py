"""The landing inbox: a file a streaming consumer drops is landed by the domain's next feature-pipeline run,
credited to that run, once; the same file dropped again (a redelivered batch) lands nothing."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fti_testing import SLICE_END, query

from models_ml.features import pipeline as fp
from models_ml.features.inbox import drop_batch, inbox_dir, pending_batches
from models_ml.offline.store import opened

pytestmark = pytest.mark.slow  # two feature-pipeline runs with a dbt build of the fraud domain


def three_new_transactions(settings) -> pa.Table:
    """Three raw transactions as the loader lands them, under ids no batch used."""
    with opened(settings, read_only=True) as store:
        rows = store.to_arrow(store.table("raw", "fraud_transactions").drop("_loaded_at", "_batch_id").limit(3))
    ids = pa.array([f"streamed-{i}" for i in range(3)], rows.schema.field("transaction_id").type)
    return rows.set_column(rows.schema.get_field_index("transaction_id"), "transaction_id", ids)


def test_the_next_run_lands_the_inbox_once(scratch_home):
    inbox = inbox_dir(scratch_home, "fraud")
    rows = three_new_transactions(scratch_home)
    drop_batch(inbox, "fraud_transactions", "stream-1.2", rows)

    run = fp.run_feature_pipeline(scratch_home, SLICE_END, domain="fraud")

    assert (run.rows_landed, run.build) == ({"fraud_transactions": 3}, "built")
    assert pending_batches(inbox) == []
    assert query(scratch_home, "select run_id from raw._landed_batches where batch_id = 'stream-1.2'") == [
        (run.run_id,)]
    staged = query(scratch_home, "select transaction_id from staging.stg_fraud__transactions "
                                 "where transaction_id like 'streamed-%' order by 1")
    assert staged == [(f"streamed-{i}",) for i in range(3)]

    drop_batch(inbox, "fraud_transactions", "stream-1.2", rows)  # the consumer crashed and wrote it again
    again = fp.run_feature_pipeline(scratch_home, SLICE_END, domain="fraud")

    assert sum(again.rows_landed.values()) == 0 and again.build.startswith("skipped")
    assert pending_batches(inbox) == []
    assert query(scratch_home, "select count(*) from raw.fraud_transactions where transaction_id like 'streamed-%'"
                 ) == [(3,)]


def test_a_bad_batch_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="a table name has no '.'"):
        drop_batch(tmp_path, "raw.fraud_transactions", "b", pa.table({"a": [1]}))
