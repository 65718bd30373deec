"""Fixtures of the kill matrix: a home in which every step has something to change, and the matrix printed at
the end of the run.

``trained_home`` is the ten-day flights slice after a day's work: a flight_delay champion (v1, its pointer
published), 2013-01-07..09 scored into ``predictions.flight_delay``, and an online store one refresh behind the
warehouse (materialized before the last three loads of every online group), so training, batch inference,
materialization and the service each move published state from an old value to a new one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from kill_testing import EARLIER_SCORING, TRAIN, copy_home_without_cache, matrix_lines, run_cli

from models_ml.core.settings import Settings

LOADS_BEHIND = 3  # loads of each online group the store has not seen yet


def _store_behind(settings: Settings, scratch: Path) -> None:
    """Give ``settings`` an online store materialized from its warehouse minus each online group's last
    ``LOADS_BEHIND`` loads (built in a scratch copy, whose online folder then replaces the home's)."""
    from models_ml.definitions.catalog import load_catalog
    from models_ml.inference.online.materialize import online_groups, refresh_online_store

    behind = copy_home_without_cache(settings.home, scratch)
    with duckdb.connect(str(behind.warehouse_path)) as con:
        for group in online_groups(load_catalog(behind)):
            relation, loaded = f'"{group.schema}"."{group.relation}"', group.created_time
            if loaded is None or not con.execute("select count(*) from information_schema.tables where "
                                                 "table_schema = ? and table_name = ?",
                                                 [group.schema, group.relation]).fetchone()[0]:
                continue
            con.execute(f"delete from {relation} where {loaded} > (select {loaded} from (select distinct {loaded} "
                        f"from {relation} order by 1 desc limit 1 offset {LOADS_BEHIND}))")
    refresh_online_store(behind, "sqlite")
    shutil.rmtree(settings.online_dir, ignore_errors=True)
    shutil.copytree(behind.online_dir, settings.online_dir)
    shutil.rmtree(scratch)


@pytest.fixture(scope="session")
def trained_home(built_home, prefect_harness, tmp_path_factory) -> Settings:
    """See the module docstring. Do not modify: copy it (``copy_home_without_cache``)."""
    settings = copy_home_without_cache(built_home.home, tmp_path_factory.mktemp("kill-trained") / "home")
    for argv in (TRAIN, EARLIER_SCORING):
        code, output = run_cli(settings.home, *argv)
        assert code == 0, output
    _store_behind(settings, tmp_path_factory.mktemp("kill-behind") / "home")
    return settings


def pytest_terminal_summary(terminalreporter):
    """The kill matrix of this run, after the results."""
    for line in matrix_lines():
        terminalreporter.write_line(line)
