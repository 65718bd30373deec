"""Helpers shared by the tests (importable as `fti_testing`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from examples.flights.loader import land_flights
from examples.fraud.generator import FraudConfig
from examples.fraud.loader import land_fraud as land_fraud_batches
from models_ml.core.settings import Settings, load_settings

SLICE_START = dt.date(2013, 1, 1)
SLICE_END = dt.date(2013, 1, 10)

# A tiny card-fraud dataset (about 20,000 transactions) whose 45 days end with the flights slice; with the
# 30-day label maturity, its first ~15 days have final labels by SLICE_END. More fraud than full size, so
# small tests see every pattern.
FRAUD_CONFIG = FraudConfig(
    seed=11, n_transactions=20_000, start=SLICE_END - dt.timedelta(days=44), days=45,
    compromised_card_share=0.10, compromised_merchant_share=0.02, dirty_row_share=0.001,
)


def ticking_clock(start: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) -> Callable[[], dt.datetime]:
    """A landing clock that advances one second per batch: two homes landed in the same order get the
    same ingestion times, so their tables can be compared row for row."""
    counter = itertools.count()
    return lambda: start + dt.timedelta(seconds=next(counter))


def land(settings: Settings, through: dt.date, clock: Callable[[], dt.datetime], start: dt.date = SLICE_START):
    settings.ensure_home()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        return land_flights(con, through, settings.home / "cache", start=start, clock=clock)


def land_fraud(settings: Settings, through: dt.date | dt.datetime, clock: Callable[[], dt.datetime],
               config: FraudConfig = FRAUD_CONFIG, batch: str = "day"):
    """Land the fraud dataset's batches through `through` (its own clock: flights' ingestion times stay put)."""
    settings.ensure_home()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        return land_fraud_batches(con, through, settings.home / "cache", config=config, batch=batch, clock=clock)


def copy_home(source: Settings, target: Path) -> Settings:
    """A copy of a built home (warehouse and all), for tests that change data."""
    shutil.copytree(source.home, target)
    return load_settings(target)


def query(settings: Settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def table_differences(a_path, b_path, relation: str) -> tuple[int, int, int, int]:
    """Row counts of `relation` in two warehouses, and rows of each missing from the other (multisets)."""
    with duckdb.connect() as con:
        con.execute(f"attach '{a_path}' as a (read_only)")
        con.execute(f"attach '{b_path}' as b (read_only)")
        count_a = con.execute(f"select count(*) from a.{relation}").fetchone()[0]
        count_b = con.execute(f"select count(*) from b.{relation}").fetchone()[0]
        only_a = con.execute(f"select count(*) from (from a.{relation} except all from b.{relation})").fetchone()[0]
        only_b = con.execute(f"select count(*) from (from b.{relation} except all from a.{relation})").fetchone()[0]
    return count_a, count_b, only_a, only_b


def latest_artifact_markdown(key: str) -> str:
    """The markdown of the newest Prefect artifact with `key` (from the test harness's API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(artifacts, key=lambda a: a.created).data


def same_value(online: Any, offline: Any) -> bool:
    """Equal values; floats bit for bit; a missing value (None, NaN) only equals a missing value."""
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    if missing(online) or missing(offline):
        return missing(online) and missing(offline)
    if isinstance(online, float) or isinstance(offline, float):
        return float(online).hex() == float(offline).hex()
    return type(online) is type(offline) and online == offline
