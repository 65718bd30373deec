"""Feature pipelines in real processes on one home: of two started together one runs and the other stops at
once with one line naming it; a run killed in its dbt build is recorded ``killed`` and the re-run publishes
exactly what an uninterrupted run does. Both compare with one uninterrupted run of the same day."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fti_testing import copy_home, query, table_differences

from models_ml.core.settings import PROJECT_ROOT
from models_ml.definitions.catalog import load_catalog
from models_ml.features import pipeline as fp

pytestmark = pytest.mark.slow

DAY = dt.date(2013, 1, 11)  # the day after the fixtures' slice

# One feature-pipeline run of the flights through DAY, started when the file `go` exists; it touches
# `building` as its dbt build starts.
RUN = textwrap.dedent("""
    import datetime as dt, pathlib, sys, time
    from models_ml.core.home_lock import HomeBusy
    from models_ml.core.settings import load_settings
    from models_ml.features import pipeline as fp

    home, day, go, building = sys.argv[1:]

    def build(settings, full_refresh, select):
        pathlib.Path(building).touch()
        return fp.build_features(settings, full_refresh, select)

    settings = load_settings(home)
    while not pathlib.Path(go).exists():
        time.sleep(0.01)
    try:
        run = fp.run_feature_pipeline(settings, dt.date.fromisoformat(day), domain="flights",
                                      steps=fp.FeatureSteps(build=build))
    except HomeBusy as busy:
        print(busy)
        sys.exit(3)
    print(run.run_id, run.status)
""")


def start_run(home, tmp_path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(home), DAY.isoformat(), str(tmp_path / "go"), str(tmp_path / f"{name}.building")],
        cwd=PROJECT_ROOT, env={**os.environ, "FTI_LOCK_WAIT_SECONDS": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def uninterrupted(built_home, tmp_path_factory):
    """A copy of the built home after one uninterrupted run through DAY, and that run."""
    settings = copy_home(built_home, tmp_path_factory.mktemp("uninterrupted") / "home")
    return settings, fp.run_feature_pipeline(settings, DAY, domain="flights")


def published_differences(a, b) -> dict[str, tuple[int, int, int]]:
    """Per published flights relation (and its quarantine): rows, and rows of each home missing from the
    other, ingestion times aside (each run lands at its own wall-clock time)."""
    relations = [*fp.published_relations(load_catalog(a), domains=["flights"]), "quarantine.quarantined_rows__nycflights"]
    found = {}
    for relation in relations:
        rows, _, only_a, only_b = table_differences(a.warehouse_path, b.warehouse_path, relation,
                                                    compared=lambda column: not column.endswith("loaded_at"))
        found[relation] = (rows, only_a, only_b)
    return found


def assert_same_published(a, b) -> None:
    differences = published_differences(a, b)
    assert all(only_a == only_b == 0 for _, only_a, only_b in differences.values()), differences
    assert all(rows > 0 for relation, (rows, _, _) in differences.items() if not relation.startswith("quarantine."))


def test_of_two_runs_started_together_one_runs_and_the_other_names_it(scratch_home, tmp_path, uninterrupted):
    reference, reference_run = uninterrupted
    first, second = start_run(scratch_home.home, tmp_path, "first"), start_run(scratch_home.home, tmp_path, "second")
    (tmp_path / "go").touch()
    outcomes = {}
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        outcomes[process.pid] = (process.returncode, out.strip(), err.strip())

    (winner, (_, out, _)), = [(pid, o) for pid, o in outcomes.items() if o[0] == 0]
    (code, line, err), = [o for o in outcomes.values() if o[0] != 0]
    assert code == 3 and err == ""
    assert line.startswith(f"FTI_HOME {scratch_home.home} is in use by `feature pipeline` (PID {winner} on ")
    assert line.endswith("; wait for it or set FTI_LOCK_WAIT_SECONDS (seconds to wait for the lock)")
    run_id, status = out.split()
    assert status == "succeeded"
    (recorded,), = query(scratch_home, "select run_id from ops.feature_pipeline_runs")  # the loser records nothing
    assert recorded == run_id
    assert_same_published(scratch_home, reference)

    # Run again: nothing new, so no dbt build, and the record says so and counts nothing as this run's.
    again = fp.run_feature_pipeline(scratch_home, DAY, domain="flights")
    assert again.build == f"skipped: nothing new since run {run_id}" and again.dbt_seconds == 0
    assert (again.rows_landed, again.rows_quarantined) == ({}, {})
    assert set(again.rows_added.values()) == {0}
    assert again.quarantined_total == reference_run.quarantined_total


def test_a_run_killed_in_its_build_is_recorded_and_the_rerun_publishes_the_same(scratch_home, tmp_path,
                                                                                 uninterrupted):
    reference, reference_run = uninterrupted
    (tmp_path / "go").touch()
    killed = start_run(scratch_home.home, tmp_path, "killed")
    deadline = time.monotonic() + 300
    log = scratch_home.dbt_log_dir / "dbt.log"
    while not (tmp_path / "killed.building").exists():
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
        time.sleep(0.02)
    log.touch()
    with log.open("rb") as lines:
        lines.seek(0, os.SEEK_END)
        while b"OK created sql incremental model" not in (line := lines.readline()):  # once a model is built
            assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
            if not line:
                time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()

    half_built = published_differences(scratch_home, reference)
    assert any(only_a or only_b for _, only_a, only_b in half_built.values()), half_built

    rerun = fp.run_feature_pipeline(scratch_home, DAY, domain="flights")

    rows = query(scratch_home, "select run_id, status, pid, rows_landed, error, finished_at from "
                               "ops.feature_pipeline_runs order by started_at")
    (_, status, pid, rows_landed, error, finished), (rerun_id, *_) = rows
    assert (status, pid, rerun_id) == ("killed", killed.pid, rerun.run_id)
    assert json.loads(rows_landed) == reference_run.rows_landed  # the days it landed are its own
    assert error.startswith(f"process {killed.pid} on ") and f"(killed); found by run {rerun.run_id}" in error
    assert finished is not None
    # The re-run landed nothing (the killed run had), but builds: the last run did not finish.
    assert (rerun.status, rerun.build, rerun.rows_landed) == ("succeeded", "built", {})
    assert_same_published(scratch_home, reference)
