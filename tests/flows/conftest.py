"""Prefect for flow tests: one temporary API server per session, in a throwaway PREFECT_HOME.

The environment is set before Prefect is imported: a fresh PREFECT_HOME takes ~20 s to start its server,
longer than Prefect's default timeout, and without the analytics switches every run logs a telemetry error.
"""

from __future__ import annotations

import os
import tempfile

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fti-prefect-test-")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """Run the test's flows against a temporary Prefect server (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
