"""Row counts and freshness of feature groups, read from the warehouse (one lazy aggregate per group)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import FeatureGroup
from models_ml.offline.store import OfflineStore, OfflineStoreError, open_offline_store


@dataclass(frozen=True)
class GroupStats:
    """How big and how fresh a feature group's table is (None when it is not built)."""

    row_count: int | None
    latest_event_at: dt.datetime | None
    latest_loaded_at: dt.datetime | None


NOT_BUILT = GroupStats(None, None, None)


def group_stats(store: OfflineStore, group: FeatureGroup) -> GroupStats:
    if not store.exists(group.schema, group.relation):
        return NOT_BUILT
    table = store.table(group.schema, group.relation)
    measures = {"row_count": table.count(), "latest_event_at": table[group.event_time].max()}
    if group.created_time:
        measures["latest_loaded_at"] = table[group.created_time].max()
    row = store.to_arrow(table.aggregate(**measures)).to_pylist()[0]
    return GroupStats(int(row["row_count"]), row["latest_event_at"], row.get("latest_loaded_at"))


def read_group_stats(settings: Settings, groups: Iterable[FeatureGroup]) -> list[GroupStats]:
    """:func:`group_stats` of each group, through one read-only store; all not built before the first landing."""
    groups = list(groups)
    try:
        store = open_offline_store(settings, read_only=True)
    except OfflineStoreError:  # no warehouse yet
        return [NOT_BUILT for _ in groups]
    with store:
        return [group_stats(store, group) for group in groups]
