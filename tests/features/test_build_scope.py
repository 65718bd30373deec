"""What a daily build checks again: the rows it writes once the domain's latest finished run succeeded, and
no unit test once that run succeeded on the same project files; everything after a failure, on a full
refresh, or for a selection that is not one domain's; and, after a run that recorded the raw tables it
built from, only what tables with new batches since feed."""

from __future__ import annotations

import dataclasses
import datetime as dt

from models_ml.definitions.catalog import load_catalog
from models_ml.features import pipeline as fp
from models_ml.features.landing import ledger_by_table
from models_ml.features.row_checks import ROW_RULES
from models_ml.offline.store import opened

EVERYTHING = fp.BuildScope(proven=False)
# a proven flights build checks its row rules inside its models (models_ml.features.row_checks)
PROVEN = fp.BuildScope(proven=True, row_rules_checked_in_models=tuple(
    f"test_name:{rule},config.severity:error" for rule in ROW_RULES))


def finished(settings, status: str, project: str, raw_tables: dict | None = None) -> None:
    run = fp.FeaturePipelineRun(domain="flights", status=status, raw_state=f"9 batches, 99 rows; project {project}",
                                finished_at=dt.datetime.now(dt.timezone.utc), raw_tables=raw_tables)
    fp.record_run(settings, run)


def test_a_build_checks_again_only_what_the_latest_finished_run_did_not_prove(scratch_home):
    select = load_catalog(scratch_home).domain("flights").dbt_selection
    project = fp.project_checksum(scratch_home)
    assert fp.build_scope(scratch_home, select) == EVERYTHING  # no run recorded yet

    # other project files: a changed view rewrote its old rows, a new test never read them: test everything
    finished(scratch_home, "succeeded", "0123456789abcdef")
    assert fp.build_scope(scratch_home, select) == EVERYTHING

    finished(scratch_home, "succeeded", project)
    assert fp.build_scope(scratch_home, select) == PROVEN
    assert fp.build_scope(scratch_home, select, full_refresh=True) == EVERYTHING
    assert fp.build_scope(scratch_home, "source:nycflights+ source:fraud+") == EVERYTHING
    fp.record_run(scratch_home, fp.FeaturePipelineRun(domain="flights"))  # a run under way is not a finished one
    assert fp.build_scope(scratch_home, select) == PROVEN

    finished(scratch_home, "failed", project)
    assert fp.build_scope(scratch_home, select) == EVERYTHING

    # A run that recorded the raw tables it built from: only what tables with new batches feed is built.
    with opened(scratch_home, read_only=True) as store:
        built_from = ledger_by_table(store)
    finished(scratch_home, "succeeded", project, {**built_from, "flights": [0, 0], "weather": [0, 0]})
    assert fp.build_scope(scratch_home, select) == dataclasses.replace(
        PROVEN, fed_by_new_data="source:nycflights.flights+ source:nycflights.weather+")
    finished(scratch_home, "succeeded", project, None)  # recorded before runs recorded their raw tables
    assert fp.build_scope(scratch_home, select) == PROVEN
