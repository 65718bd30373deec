"""The public face: every exported name resolves, says what it is for, and importing the package is cheap."""

from __future__ import annotations

import subprocess
import sys

import models_ml


def test_every_export_resolves_and_has_a_docstring():
    for name in models_ml.__all__:
        if name == "__version__":
            continue
        value = getattr(models_ml, name)
        assert (value.__doc__ or "").strip(), f"models_ml.{name} has no docstring"
        assert name in dir(models_ml)


def test_unknown_names_are_attribute_errors():
    try:
        models_ml.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_imports_no_engine():
    code = "import sys, models_ml; print(sorted(m for m in ('duckdb', 'ibis', 'lightgbm', 'prefect') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
