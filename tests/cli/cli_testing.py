"""Helpers of the command-line tests (importable as `cli_testing`): run the installed `fti` in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from models_ml.core.settings import Settings

FTI = Path(sys.executable).with_name("fti")
MODEL = "toy"


def run_fti(*args: str, home: Settings | Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`fti ARGS` in its own process (the installed entry point), with FTI_HOME set to ``home``."""
    environment = dict(os.environ)
    environment.pop("FTI_DEBUG", None)
    if home is not None:
        environment["FTI_HOME"] = str(home.home if isinstance(home, Settings) else home)
    environment.update(env or {})
    return subprocess.run([str(FTI), *args], capture_output=True, text=True, env=environment, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]
