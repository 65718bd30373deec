"""Fixtures for the streaming pipeline: a real redis-server (the online tests' pattern), flushed per test."""

from __future__ import annotations

import shutil

import pytest

from bench.loopback import redis_server as start_redis_server


@pytest.fixture(scope="session")
def stream_redis(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the streaming tests need one")
    with start_redis_server(binary, tmp_path_factory.mktemp("stream-redis")) as url:
        yield url


@pytest.fixture
def redis_url(stream_redis):
    import redis

    client = redis.Redis.from_url(stream_redis)
    client.flushdb()
    client.close()
    return stream_redis
