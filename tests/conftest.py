"""Shared fixtures: a temporary FTI_HOME with a small slice of the real flights data, landed and built."""

from __future__ import annotations

import os
import shutil
import tempfile  # noqa: E402

# Settings for every test process, before prefect/lightgbm are imported anywhere. Prefect gets a
# throwaway home (removed when the session ends): a fresh one takes ~20 s to start its server, longer than
# Prefect's default timeout.
PREFECT_TEST_HOME = tempfile.mkdtemp(prefix="fti-prefect-test-")
os.environ["PREFECT_HOME"] = PREFECT_TEST_HOME
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

import datetime as dt  # noqa: E402

import pytest  # noqa: E402
from fti_testing import (  # noqa: E402
    CHURN_CLOCK_START,
    CHURN_TEST_CONFIG,
    SLICE_END,
    copy_home,
    land,
    land_churn,
    land_fraud,
    ticking_clock,
)

from models_ml.core.settings import Settings, load_settings  # noqa: E402
from models_ml.features.dbt_runner import build  # noqa: E402


@pytest.fixture(scope="session")
def built_home(tmp_path_factory) -> Settings:
    """Ten days of real flights (2013-01-01..10) and the tiny fraud dataset (fti_testing.FRAUD_CONFIG, 45 days
    through 2013-01-10), landed and built with `dbt build`. Do not modify."""
    settings = load_settings(tmp_path_factory.mktemp("fti") / "home")
    land(settings, SLICE_END, ticking_clock())
    land_fraud(settings, SLICE_END, ticking_clock(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)))
    build(settings, ["build"])
    return settings


@pytest.fixture(scope="session")
def churn_home(tmp_path_factory) -> Settings:
    """The small churn dataset (fti_testing.CHURN_TEST_CONFIG, 2024-01-01..2024-03-10) landed in one go and
    built with `dbt build` of the churn domain only (its own home: adding it to `built_home` would cost that
    fixture more than its data is worth to the other tests). Do not modify."""
    settings = load_settings(tmp_path_factory.mktemp("fti-churn") / "home")
    land_churn(settings, CHURN_TEST_CONFIG.last_day, ticking_clock(CHURN_CLOCK_START))
    build(settings, ["build", "--select", "source:churn+"])
    return settings


@pytest.fixture
def scratch_home(built_home, tmp_path) -> Settings:
    """A private copy of `built_home` that a test may change."""
    return copy_home(built_home, tmp_path / "home")


@pytest.fixture(scope="session")
def prefect_harness():
    """Run the test's flows against a temporary Prefect server (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_unconfigure(config):
    """Remove the session's Prefect home: the suite leaves nothing in the temp folder."""
    shutil.rmtree(PREFECT_TEST_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """A test that needs the Prefect server is slow (the server takes ~20 s to start). Run the modules that
    hold slow tests last, so the progress line moves through the quick ones first (whole modules move, so no
    module-scoped fixture is built twice)."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ in slow_modules)
