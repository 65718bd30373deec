"""Helpers of the streaming tests: replay the tiny fraud dataset, build the batch tables, compare."""

from __future__ import annotations

import datetime as dt
import math

from fti_testing import FRAUD_CONFIG

from examples.fraud.producer import events_between
from models_ml.core.settings import Settings
from models_ml.definitions.catalog import load_catalog
from models_ml.features.dbt_runner import build
from models_ml.inference.online.store import RowsRequest, group_id, open_online_store
from models_ml.offline.store import EVENT_AT, opened
from models_ml.features.inbox import land_inbox
from models_ml.streaming.handoff import handoff_dir
from models_ml.streaming.updater import CARD, MERCHANT

START = dt.datetime.combine(FRAUD_CONFIG.start, dt.time(), dt.timezone.utc)


def replay_events(settings: Settings, days: float) -> list[tuple]:
    return events_between(FRAUD_CONFIG, settings.home / "cache", START, START + dt.timedelta(days=days))


def build_batch(settings: Settings) -> None:
    """Land the hand-off files and build the two activity tables with dbt, as the next pipeline run does."""
    with opened(settings) as store:
        land_inbox(store, handoff_dir(settings))
    build(settings, ["run", "--select", f"+{CARD} +{MERCHANT}"])


def max_difference(settings: Settings, store_name: str = "sqlite") -> tuple[float, int, list[str]]:
    """(max abs float difference, entities compared, mismatches) between the online store and the latest
    row per entity of the dbt tables."""
    catalog = load_catalog(settings)
    worst, compared, mismatches = 0.0, 0, []
    with opened(settings, read_only=True) as warehouse, open_online_store(settings, store_name) as online:
        for name in (CARD, MERCHANT):
            group = catalog.group(name)
            features = [f.name for f in group.features]
            offline = warehouse.latest_rows(group.schema, group.relation, keys=group.entity,
                                            event_time=group.event_time, created_time=group.created_time,
                                            columns=[*group.entity, *features]).rows.to_pylist()
            keys = [str(r[group.entity[0]]) for r in offline]
            stored = online.read_rows([RowsRequest(group_id(group.name, group.version), keys)])[0]
            for row, got in zip(offline, stored):
                compared += 1
                if got is None or got.event_at != row[EVENT_AT]:
                    mismatches.append(f"{name} {row[group.entity[0]]}: {got and got.event_at} != {row[EVENT_AT]}")
                    continue
                for feature in features:
                    a, b = row[feature], got.values.get(feature)
                    if isinstance(a, float) and isinstance(b, float):
                        if math.isnan(a) and math.isnan(b):
                            continue
                        worst = max(worst, abs(a - b))
                        if abs(a - b) > 1e-12:
                            mismatches.append(f"{name} {keys} {feature}: {b} != {a}")
                    elif a != b:
                        mismatches.append(f"{name} {row[group.entity[0]]} {feature}: {b!r} != {a!r}")
    return worst, compared, mismatches
