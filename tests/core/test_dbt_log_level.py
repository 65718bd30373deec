"""FTI_DBT_LOG_LEVEL_FILE: dbt's log file keeps each node's start, result and timing (info) unless told
otherwise, not every statement (dbt's debug default, some 5 % of a daily build); a level dbt does not know is
refused with the variable's name and the fix."""

from __future__ import annotations

import pytest

from models_ml.core.settings import SettingsError, load_settings


def test_the_build_logs_at_info(built_home):
    lines = (built_home.dbt_log_dir / "dbt.log").read_text().splitlines()
    assert any("[info ]" in line and "OK created sql incremental model" in line for line in lines)
    assert not [line for line in lines if "[debug]" in line][:3]


@pytest.mark.parametrize(("value", "expected"), [(None, "info"), ("debug", "debug"), ("WARN", "warn"),
                                                 ("none", "none")])
def test_the_level_is_read_from_the_environment(tmp_path, monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FTI_DBT_LOG_LEVEL_FILE", raising=False)
    else:
        monkeypatch.setenv("FTI_DBT_LOG_LEVEL_FILE", value)
    assert load_settings(tmp_path / "home").dbt_log_level_file == expected


def test_a_bad_level_names_the_variable(monkeypatch):
    monkeypatch.setenv("FTI_DBT_LOG_LEVEL_FILE", "loud")
    with pytest.raises(SettingsError, match=r"FTI_DBT_LOG_LEVEL_FILE='loud' is not one of debug, info, warn, "
                                            r"error, none; set it to one"):
        load_settings()
