"""FTI_COMPILED_TREES: batch scoring compiles the trees unless it is 0 (or false, no, off); another value is
refused with the variable's name and the fix."""

from __future__ import annotations

import pytest

from models_ml.core.settings import SettingsError, load_settings


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("1", True), ("on", True), ("0", False),
                                                 ("False", False), ("no", False)])
def test_compiled_trees_on_by_default(tmp_path, monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("FTI_COMPILED_TREES", raising=False)
    else:
        monkeypatch.setenv("FTI_COMPILED_TREES", value)
    settings = load_settings(tmp_path / "home")
    assert settings.compiled_trees is expected
    assert settings.compiled_trees_dir == tmp_path / "home" / "cache" / "compiled_trees"


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("FTI_COMPILED_TREES", "maybe")
    with pytest.raises(SettingsError, match=r"FTI_COMPILED_TREES='maybe' is not a yes/no value; set it to 1 or 0"):
        load_settings()
