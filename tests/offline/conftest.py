"""The Spark session the offline tests share: one per test process, because starting one costs 15-30 s and
its warehouse is fixed once started.

Without Java or pyspark the Spark cases are skipped with that reason, except where FTI_REQUIRE_SPARK=1
(CI: .ci/run) says they must run: then they fail.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil

import pytest

from models_ml.core.settings import Settings, load_settings


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[dev,spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (apt-get install openjdk-17-jre-headless; `make test` does where it may)"
    return None


@pytest.fixture(scope="session")
def spark_settings(tmp_path_factory) -> Settings:
    """A home on the spark engine whose local session (local[2]) is started once; stopped at the end."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("FTI_REQUIRE_SPARK") == "1":
            pytest.fail(f"the Spark tests cannot run: {reason}; FTI_REQUIRE_SPARK=1 says they must")
        pytest.skip(f"the Spark tests cannot run: {reason}")
    from models_ml.offline.spark_store import spark_session

    home = tmp_path_factory.mktemp("spark") / "home"
    settings = dataclasses.replace(load_settings(home), engine="spark", offline_store="spark",
                                   spark_master="local[2]")
    session = spark_session(settings)
    yield settings
    session.stop()


@pytest.fixture
def spark_store(spark_settings):
    """The shared session's store, emptied after the test (every database but `default` is dropped)."""
    from models_ml.offline.spark_store import SparkStore, ident

    store = SparkStore.open(spark_settings)
    yield store
    session = store.session
    for database in session.catalog.listDatabases():
        if database.name != "default":
            session.sql(f"drop database if exists {ident(database.name)} cascade")
    for table in session.catalog.listTables("default"):
        if table.isTemporary:
            session.catalog.dropTempView(table.name)
        else:
            session.sql(f"drop table if exists default.{ident(table.name)}")
