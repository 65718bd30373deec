"""Fixtures for the online store and service: a real Redis server, a flights home with a champion.

Redis: ``redis-server`` is started on a free loopback port with a temporary directory (no persistence) once
per session and stopped at the end; each test gets a flushed database. When the binary is missing locally the
Redis cases are skipped with that reason (CI installs it: see .ci/run).
"""

from __future__ import annotations

import os
import shutil

import pytest
from fti_testing import copy_home
from online_testing import train_champion

from bench.loopback import redis_server as start_redis_server
from models_ml.core.settings import Settings


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port: yields its URL; stopped at the end of the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = ("redis-server is not installed: the Redis online-store tests cannot run "
                  "(`make test` installs it where it may: root with apt-get)")
        if os.environ.get("FTI_REQUIRE_REDIS") == "1":
            pytest.fail(f"{reason}; FTI_REQUIRE_REDIS=1 says they must")
        pytest.skip(reason)
    with start_redis_server(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def served_home(built_home, tmp_path_factory) -> Settings:
    """The ten-day flights slice with a flight_delay champion, its online store (SQLite) materialized and
    its champion published. Do not modify: copy it (``copy_home``)."""
    from models_ml.inference.online.materialize import refresh_online_store
    from models_ml.training.registry import publish_champions

    settings = copy_home(built_home, tmp_path_factory.mktemp("served") / "home")
    train_champion(settings)
    refresh_online_store(settings, "sqlite")
    publish_champions(settings)
    return settings
