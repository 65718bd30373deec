"""FTI_DUCKDB_MEMORY_LIMIT: the warehouse's connections get it (sorts and windows spill past it), and a value
DuckDB cannot read is refused with the variable's name and the fix."""

from __future__ import annotations

import pytest

from models_ml.core.settings import SettingsError, load_settings
from models_ml.offline.store import opened


def test_the_warehouse_connection_gets_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FTI_DUCKDB_MEMORY_LIMIT", "512MiB")
    settings = load_settings(tmp_path / "home")
    assert settings.duckdb_memory_limit == "512MiB"
    with opened(settings) as store:
        ((limit,),) = store.execute("select current_setting('memory_limit')")
    assert limit == "512.0 MiB"
    monkeypatch.delenv("FTI_DUCKDB_MEMORY_LIMIT")
    assert load_settings(tmp_path / "home").duckdb_memory_limit is None


def test_a_bad_limit_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("FTI_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(SettingsError, match=r"FTI_DUCKDB_MEMORY_LIMIT='lots' is not an amount of memory; set it to e\.g\. 1GB"):
        load_settings()
