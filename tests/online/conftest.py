"""Fixtures for the online store and service: a real Redis server, both stores, a flights home with a champion.

Redis: ``redis-server`` is started on a free loopback port with a temporary directory (no persistence) once
per session and stopped at the end; each test gets a flushed database. When the binary is missing locally the
Redis cases are skipped with that reason (CI installs it: see .ci/run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fti_testing import copy_home
from online_testing import train_champion

from bench.loopback import redis_server as start_redis_server
from models_ml.core.settings import Settings

STORES = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port: yields its URL; stopped at the end of the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed on this machine (CI installs it: apt-get install redis-server)")
    with start_redis_server(binary, tmp_path_factory.mktemp("redis")) as url:
        yield url


def make_store(kind: str, tmp_path: Path, request):
    if kind == "sqlite":
        from models_ml.inference.online.sqlite_store import SqliteStore

        return SqliteStore(tmp_path / "online" / "online_store.sqlite")
    from models_ml.inference.online.redis_store import RedisStore

    url = request.getfixturevalue("redis_server")
    store = RedisStore(url, prefix="fti-test")
    store.client.flushdb()
    return store


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    """Each store implementation, empty."""
    created = make_store(request.param, tmp_path, request)
    yield created
    created.close()


@pytest.fixture(scope="session")
def served_home(built_home, tmp_path_factory) -> Settings:
    """The ten-day flights slice with a flight_delay champion, its online store (SQLite) materialized and
    its champion published. Do not modify: copy it (``copy_home``)."""
    from models_ml.inference.online.materialize import materialize
    from models_ml.training.registry import publish_champions
    from models_ml.inference.online.store import open_store

    settings = copy_home(built_home, tmp_path_factory.mktemp("served") / "home")
    train_champion(settings)
    with open_store(settings, "sqlite") as store:
        materialize(settings, store)
    publish_champions(settings)
    return settings
