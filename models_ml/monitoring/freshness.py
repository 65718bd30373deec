"""Freshness of the feature groups a view reads, against each group's declared expectation.

Two ages per group (from :func:`models_ml.features.stats.group_stats`, one aggregate per group):

* **event age**: ``as_of`` minus the group's latest event time. ``as_of`` is the data time the run is about
  (the end of the last monitored window), not the wall clock, so a replayed history (flights of 2013) is
  judged by the days being scored;
* **build age**: ``now`` minus the group's latest ``created_time`` (when its rows were last loaded): the
  pipeline stopping is visible whatever the data's own dates.

The level is the worse of the two against ``meta.fti.freshness`` (see :mod:`.config`). Results go to
``monitoring.group_freshness``, one row per group version and ``as_of``, replaced when checked again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models_ml.definitions.catalog import FeatureView
from models_ml.features.stats import group_stats
from models_ml.monitoring.config import FreshnessExpectation, freshness_expectation
from models_ml.monitoring.tables import GROUP_FRESHNESS
from models_ml.offline.store import OfflineStore

_LEVELS = ("ok", "warn", "error")
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class GroupFreshness:
    """One group of a view: its latest event and load, their ages, the expectation and the level."""

    label: str  # the view's name for the selection (see FeatureView.group_labels)
    group: str
    version: int | None
    latest_event_at: dt.datetime | None
    latest_loaded_at: dt.datetime | None
    event_age: dt.timedelta | None
    build_age: dt.timedelta | None
    expectation: FreshnessExpectation
    level: str  # ok, warn, error; "none" when the group declares no expectation

    @property
    def declared(self) -> bool:
        return self.expectation.warn_after is not None or self.expectation.error_after is not None


def worse(a: str, b: str) -> str:
    return a if _LEVELS.index(a) >= _LEVELS.index(b) else b


def check_freshness(store: OfflineStore, view: FeatureView, *, as_of: dt.datetime,
                    now: dt.datetime) -> list[GroupFreshness]:
    """Each group selection of ``view`` (once per group version), its ages and level."""
    found: list[GroupFreshness] = []
    seen: set[tuple[str, int | None]] = set()
    for label, ref in zip(view.group_labels, view.features):
        group = ref.group
        if (group.name, group.version) in seen:
            continue
        seen.add((group.name, group.version))
        expectation = freshness_expectation(group)
        stats = group_stats(store, group)
        event_at = stats.latest_event_at.astimezone(_UTC) if stats.latest_event_at else None
        loaded_at = stats.latest_loaded_at.astimezone(_UTC) if stats.latest_loaded_at else None
        event_age = as_of - event_at if event_at else None
        build_age = now - loaded_at if loaded_at else None
        level = "none"
        if expectation.warn_after is not None or expectation.error_after is not None:
            level = worse(expectation.level(event_age),
                          expectation.level(build_age) if group.created_time else "ok")
        found.append(GroupFreshness(label, group.name, group.version, event_at, loaded_at, event_age, build_age,
                                    expectation, level))
    return found


def _seconds(value: dt.timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def write_freshness(store: OfflineStore, checked: list[GroupFreshness], *, as_of: dt.datetime,
                    computed_at: dt.datetime) -> int:
    """Replace the rows of these group versions at ``as_of`` by ``checked``, in one transaction."""
    rows = [[g.group, g.version if g.version is not None else 0, as_of, g.latest_event_at, g.latest_loaded_at,
             _seconds(g.event_age), _seconds(g.build_age), _seconds(g.expectation.warn_after),
             _seconds(g.expectation.error_after), g.level, computed_at] for g in checked]
    with store.transaction():
        for row in rows:
            store.execute(f"delete from {GROUP_FRESHNESS} where group_name = ? and group_version = ? and as_of = ?",
                          row[:3])
        if rows:
            store.executemany(f"insert into {GROUP_FRESHNESS} values ({', '.join('?' * len(rows[0]))})", rows)
    return len(rows)
