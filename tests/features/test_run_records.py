"""ops.feature_pipeline_runs: a run is recorded from its start, a killed one is settled by the next run with
the batches it landed, any failure is recorded, and an existing home's table gains the new columns."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fti_testing import SLICE_END, query

from models_ml.features import pipeline as fp
from models_ml.offline.store import opened

DAY = dt.date(2013, 1, 11)  # the day after the fixtures' slice


def runs(settings, columns: str = "run_id, status, rows_landed, error") -> list[tuple]:
    return query(settings, f"select {columns} from ops.feature_pipeline_runs order by started_at")


def test_a_killed_run_is_settled_by_the_next_with_the_batches_it_landed(scratch_home):
    dead = fp.FeaturePipelineRun(domain="flights", pid=999_999, host="elsewhere")
    fp.record_run(scratch_home, dead)  # what a run records at its start; then it lands and is killed
    _, landed = fp.land_raw(scratch_home, DAY, "flights", dead.run_id)
    assert landed.total_rows > 0

    assert fp.settle_killed_runs(scratch_home, noticed_by="next-run") == [dead.run_id]

    (run_id, status, rows_landed, error), = runs(scratch_home)
    assert (run_id, status, json.loads(rows_landed)) == (dead.run_id, "killed", landed.rows_landed())
    assert error == (f"process 999999 on elsewhere ended without finishing (killed); found by run next-run; "
                     f"it landed {len(landed.batches)} batches (2013-01-11 .. 2013-01-12)")
    (finished,), = runs(scratch_home, "finished_at")
    assert finished is not None and finished.utcoffset() == dt.timedelta(0)
    assert fp.settle_killed_runs(scratch_home, noticed_by="later") == []


def test_a_run_failing_outside_dbt_is_recorded_failed(scratch_home):
    def broken_landing(settings, through, domain, run_id):
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        fp.run_feature_pipeline(scratch_home, DAY, domain="flights", steps=fp.FeatureSteps(land=broken_landing))
    (_, status, rows_landed, error), = runs(scratch_home)
    assert (status, json.loads(rows_landed), error) == ("failed", {}, "OSError: disk went away")
    (build, pid), = runs(scratch_home, "build, pid")
    assert build is None and pid > 0


def test_a_home_from_before_gains_the_new_columns_and_keeps_its_rows(scratch_home):
    with opened(scratch_home) as store:
        store.execute("create schema if not exists ops")
        store.execute("""create table ops.feature_pipeline_runs (
            run_id varchar primary key, started_at timestamptz, finished_at timestamptz, status varchar,
            landed_through varchar, rows_landed json, rows_built json, rows_added json,
            rows_quarantined json, dbt_seconds double, dbt_node_seconds double, error varchar)""")
        store.execute("insert into ops.feature_pipeline_runs (run_id, started_at, status) "
                      "values ('old', timestamptz '2026-01-01 00:00:00+00', 'succeeded')")

    fp.record_run(scratch_home, fp.FeaturePipelineRun(run_id="new", domain="flights", status="succeeded"))

    assert runs(scratch_home, "run_id, pid, domain") == [("old", None, None), ("new", fp.FeaturePipelineRun().pid,
                                                                                "flights")]


def test_a_run_counts_only_what_it_quarantined_and_a_run_with_nothing_new_skips_dbt(scratch_home):
    # The fixture's fraud days are landed and built (with quarantined rows), but no run was recorded: the
    # first run lands nothing and builds, the second has nothing new since the first.
    first = fp.run_feature_pipeline(scratch_home, SLICE_END, domain="fraud")
    assert (first.rows_landed, first.build, first.rows_quarantined) == ({}, "built", {})
    assert sum(first.quarantined_total.values()) > 0

    second = fp.run_feature_pipeline(scratch_home, SLICE_END, domain="fraud")
    assert second.build == f"skipped: nothing new since run {first.run_id}" and second.dbt_seconds == 0
    assert (second.rows_quarantined, second.quarantined_total) == ({}, first.quarantined_total)
    (build, quarantined), = query(scratch_home, "select build, rows_quarantined from ops.feature_pipeline_runs "
                                                "where run_id = ?", [second.run_id])
    assert (build, json.loads(quarantined)) == (second.build, {})
    assert "dbt build skipped: nothing new since run" in second.as_markdown()
