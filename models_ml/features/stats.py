"""Row counts and freshness of feature groups, read from the warehouse."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureGroup


@dataclass(frozen=True)
class GroupStats:
    """How big and how fresh a feature group's table is (None when it is not built)."""

    row_count: int | None
    latest_event_at: dt.datetime | None
    latest_loaded_at: dt.datetime | None


def group_stats(settings: Settings, group: FeatureGroup) -> GroupStats:
    if not settings.warehouse_path.exists():
        return GroupStats(None, None, None)
    created = f"max({group.created_time})" if group.created_time else "null"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        try:
            count, event, loaded = con.execute(
                f"select count(*), max({group.event_time}), {created} from {group.qualified_relation}"
            ).fetchone()
        except duckdb.CatalogException:
            return GroupStats(None, None, None)
    return GroupStats(int(count), event, loaded)
