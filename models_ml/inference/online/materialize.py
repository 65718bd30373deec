"""Online materialization: refresh the online store from the warehouse's feature groups, incrementally, then
republish the champion pointers the inference service follows.

**Which group versions**: every ``online: true`` group's latest version (what a new model trains on, and
all a home without models serves), and every version a model in use needs: the champion's, the
challenger's, and those of the champion a rollback would return to
(:func:`models_ml.training.registry.group_versions_in_use`). So during an upgrade both versions of a group
are refreshed side by side, and a version no model in use needs any more is no longer refreshed (its rows
stay in the store, listed as ``not_refreshed``; naming it in ``groups`` refreshes it anyway, e.g. to
materialize a version before its model becomes challenger).

For each of them:

1. **Watermark**: the store's greatest created (loaded) time of the group (``None`` on first sight, or when
   the group's columns changed, which rebuilds it whole; a group without ``created_time`` is read whole
   every time: nothing else tells which rows are new). An external group (read in place from another
   team's DuckDB file or Parquet files, see :mod:`models_ml.offline.external`) is the same: incremental
   when it declares a created time or dbt's ``loaded_at_field``, else read in full on every run; one whose
   upstream cannot be read as declared is skipped and reported (``unreadable``), the others go on.
2. **Extract** (:meth:`OfflineStore.latest_rows`, the offline store opened read-only): the rows loaded at
   or after the watermark, reduced to one row per entity by the point-in-time join's tie rule (latest event
   time, then latest created time with NULL losing, then the largest feature values), converted to storage
   form in Arrow.
3. **Apply**: :meth:`OnlineStore.apply` merges all groups' candidates in one atomic step and records their
   freshness; a candidate older than the stored row is ignored (see :mod:`models_ml.inference.online.store`).

The warehouse is opened only here, read-only, and closed before the online store is written: the inference
service never opens it. :func:`run_online_materialization` is the pipeline's one composition (refresh,
then publish); the ``online-materialization`` flow passes it its tasks, which wrap these same steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.home_lock import hold_home
from models_ml.core.kinds import kind_of
from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog, FeatureGroup, load_catalog
from models_ml.inference.online.store import (
    NULL_CREATED_US,
    UTC,
    Freshness,
    GroupRefresh,
    GroupSchema,
    OnlineStore,
    entity_keys,
    group_id,
    open_online_store,
    storage_array,
    to_us,
)
from models_ml.offline.external import mount_readable
from models_ml.offline.store import CREATED_AT, EVENT_AT, OfflineStore, opened
from models_ml.training import registry
from models_ml.training.champion_pointer import Pointer


def online_groups(catalog: Catalog) -> list[FeatureGroup]:
    """Every ``online: true`` group version, in a fixed order."""
    return sorted((g for g in catalog.groups.values() if g.online), key=lambda g: (g.name, g.version or 0))


def kept_groups(catalog: Catalog, in_use: Sequence[registry.InUse]) -> list[FeatureGroup]:
    """The online group versions to refresh: each group's latest version and every version in use."""
    used = {(u.feature_group, u.group_version or 0) for u in in_use}
    latest = {(g.name, (g.latest_version if g.latest_version is not None else g.version) or 0)
              for g in catalog.groups.values()}
    return [g for g in online_groups(catalog) if (g.name, g.version or 0) in used | latest]


def group_schema(group: FeatureGroup, arrow_schema: pa.Schema) -> GroupSchema:
    """The store's view of a group version: its entity, its features with storage kinds, its TTL."""
    names = set(arrow_schema.names)
    wanted = [f.name for f in group.features] if group.columns else [
        n for n in arrow_schema.names if n not in {*group.entity, group.event_time, group.created_time}]
    missing = [n for n in [*group.entity, group.event_time, *wanted] if n not in names]
    if missing:
        raise ValueError(f"feature group {group.name} v{group.version}: table {group.qualified_relation} "
                         f"lacks columns {missing}")
    return GroupSchema(
        name=group.name, version=group.version, entity=tuple(group.entity),
        features=tuple((n, kind_of(arrow_schema.field(n).type)) for n in wanted),
        ttl_seconds=group.ttl.total_seconds() if group.ttl is not None else None,
    )


def to_refresh(table: pa.Table, schema: GroupSchema) -> pa.Table:
    """Extracted rows -> the storage form :class:`GroupRefresh` expects."""
    kinds = schema.kinds()
    columns: dict[str, pa.Array] = {
        "entity_key": entity_keys(table, schema.entity),
        "event_us": storage_array(table[EVENT_AT], "timestamp"),
        "created_us": pc.fill_null(storage_array(table[CREATED_AT], "timestamp"), NULL_CREATED_US),
    }
    for column in schema.entity:
        columns[column] = pc.cast(table[column], pa.string()).combine_chunks()
    for name in schema.feature_names:
        if name not in columns:
            columns[name] = storage_array(table[name], kinds[name])
    return pa.table(columns)


def extract(warehouse: OfflineStore, group: FeatureGroup, schema: GroupSchema,
            watermark: dt.datetime | None) -> GroupRefresh:
    """The group's rows loaded at or after ``watermark`` (all rows when None), one per entity by the tie
    rule (:meth:`OfflineStore.latest_rows`), in storage form. Features that have no order (``json``: lists,
    structs) break no ties."""
    read = warehouse.latest_rows(
        group.schema, group.relation, keys=schema.entity, event_time=group.event_time,
        created_time=group.created_time,
        columns=[*schema.entity, *(n for n in schema.feature_names if n not in schema.entity)],
        tie_break=[n for n, kind in schema.features if kind != "json"], since=watermark,
    )
    return GroupRefresh(
        schema=schema, rows=to_refresh(read.rows, schema),
        watermark_us=to_us(read.max_created) if read.max_created is not None else None,
        latest_event_us=to_us(read.max_event) if read.max_event is not None else None,
        source_rows=read.rows_read,
    )


@dataclass(frozen=True)
class GroupReport:
    group: str
    mode: str  # "incremental" | "full"
    watermark_before: dt.datetime | None
    source_rows: int  # offline rows read (loaded at or after the watermark)
    candidates: int  # entities among them
    rows_written: int  # entities whose stored row changed
    freshness: Freshness | None


@dataclass
class MaterializationReport:
    """What a refresh did, per group version: for logs, the flow's artifact and tests."""

    store: str
    materialized_at: dt.datetime
    groups: list[GroupReport] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    not_built: list[str] = field(default_factory=list)  # online groups this warehouse has no table for
    # group versions the store holds that no model in use needs (and that are not the latest): left as they are
    not_refreshed: list[str] = field(default_factory=list)
    # external groups whose upstream could not be read as declared: group id -> why (nothing of them changed)
    unreadable: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "materialized_at": self.materialized_at.isoformat(), "seconds": self.seconds,
            "not_built": self.not_built, "not_refreshed": self.not_refreshed, "unreadable": self.unreadable,
            "groups": [{**dataclasses.asdict(g),
                        "watermark_before": g.watermark_before.isoformat() if g.watermark_before else None,
                        "freshness": g.freshness.as_dict() if g.freshness else None} for g in self.groups],
        }

    def as_markdown(self) -> str:
        def when(value: dt.datetime | None) -> str:
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"

        lines = [
            f"# Online materialization ({self.store})", "",
            f"Committed at {when(self.materialized_at)} UTC. Rows are read from the warehouse at or after each "
            "group's watermark (its greatest loaded time already in the store).", "",
            "| group | mode | offline rows read | entities in refresh | rows written | entities held | "
            "latest event (UTC) | watermark (UTC) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in self.groups:
            f = g.freshness
            lines.append(f"| {g.group} | {g.mode} | {g.source_rows:,} | {g.candidates:,} | {g.rows_written:,} | "
                         f"{f.entities if f else 0:,} | {when(f.latest_event_at if f else None)} | "
                         f"{when(f.watermark if f else None)} |")
        if self.not_refreshed:
            lines += ["", "Not refreshed (no model in use needs them): " + ", ".join(self.not_refreshed)]
        for gid, why in self.unreadable.items():
            lines += ["", f"Not refreshed, upstream unreadable: {gid}: {why}"]
        lines += ["", "Seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in self.seconds.items())]
        return "\n".join(lines)


def materialize(
    settings: Settings,
    store: OnlineStore,
    *,
    catalog: Catalog | None = None,
    groups: Sequence[str] | None = None,
    full_refresh: bool = False,
    materialized_at: dt.datetime | None = None,
) -> MaterializationReport:
    """Refresh ``store`` from the warehouse for every online group version to keep (:func:`kept_groups`),
    or those named in ``groups`` (by name: its kept versions; ``name:vN``: that version, kept or not);
    ``full_refresh`` re-reads every row (the merge still never goes backwards)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    catalog = catalog if catalog is not None else load_catalog(settings)
    kept = kept_groups(catalog, registry.group_versions_in_use(settings))
    kept_ids = {group_id(g.name, g.version) for g in kept}
    chosen = [g for g in online_groups(catalog)
              if group_id(g.name, g.version) in (groups or ()) or
              (group_id(g.name, g.version) in kept_ids and (groups is None or g.name in groups))]
    stored_freshness = store.freshness() if store.is_ready() else {}
    stored_schemas = store.schemas() if stored_freshness else {}
    not_refreshed = sorted(gid for gid in stored_freshness if gid not in kept_ids
                           and gid not in {group_id(g.name, g.version) for g in chosen})
    timings["plan"] = time.perf_counter() - started

    refreshes: list[GroupRefresh] = []
    modes: list[tuple[str, dt.datetime | None]] = []
    clock = time.perf_counter()
    with opened(settings, read_only=True) as warehouse:
        unreadable = {group_id(g.name, g.version): why
                      for g in chosen for name, why in mount_readable(warehouse, [g]).items()}
        chosen = [g for g in chosen if group_id(g.name, g.version) not in unreadable]
        built = warehouse.relations()
        # A home may hold one example's data only: an online group not built here has nothing to serve.
        skipped = [group_id(g.name, g.version) for g in chosen if (g.schema, g.relation) not in built]
        chosen = [g for g in chosen if (g.schema, g.relation) in built]
        for group in chosen:
            # The kinds of the columns as the extract returns them.
            schema = group_schema(group, warehouse.arrow_schema(group.schema, group.relation))
            before = stored_freshness.get(schema.id)
            same_layout = stored_schemas.get(schema.id) == schema
            watermark = before.watermark if (before and same_layout and not full_refresh) else None
            incremental = watermark is not None and group.created_time is not None
            refreshes.append(extract(warehouse, group, schema, watermark))
            modes.append(("incremental" if incremental else "full", watermark))
    timings["extract"] = time.perf_counter() - clock

    clock = time.perf_counter()
    materialized_at = materialized_at or dt.datetime.now(UTC)
    written = store.apply(refreshes, materialized_at) if refreshes else {}
    timings["apply"] = time.perf_counter() - clock
    after = store.freshness() if refreshes else {}
    report = MaterializationReport(store=store.name, materialized_at=materialized_at, seconds=timings,
                                   not_built=skipped, not_refreshed=not_refreshed, unreadable=unreadable)
    for refresh, (mode, watermark) in zip(refreshes, modes):
        gid = refresh.schema.id
        report.groups.append(GroupReport(
            group=gid, mode=mode, watermark_before=watermark, source_rows=refresh.source_rows,
            candidates=refresh.rows.num_rows, rows_written=written.get(gid, 0), freshness=after.get(gid),
        ))
    timings["total"] = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------------------------------
# The pipeline: refresh, then publish


def refresh_online_store(settings: Settings, store: str | None = None, groups: Sequence[str] | None = None,
                         full_refresh: bool = False) -> MaterializationReport:
    """:func:`materialize` into the online store ``store`` (default ``settings.online_store``), opened and
    closed here."""
    with open_online_store(settings, store) as online:
        return materialize(settings, online, groups=groups, full_refresh=full_refresh)


@dataclass(frozen=True)
class OnlineMaterialization:
    """What a run did: the refresh's report and the champion pointers (re)published."""

    report: MaterializationReport
    published: list[Pointer]

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "published": [
            {"model": p.model_name, "version": p.version, "pointer": str(p.path)} for p in self.published]}

    def as_markdown(self) -> str:
        markdown = self.report.as_markdown()
        if self.published:
            markdown += "\n\nChampions published for the inference service: " + ", ".join(
                f"{p.model_name} v{p.version}" for p in self.published)
        return markdown


@dataclass(frozen=True)
class OnlineSteps:
    """The steps :func:`run_online_materialization` calls; a flow passes its tasks, which wrap these same
    functions."""

    refresh: Callable[[Settings, str | None, Sequence[str] | None, bool], MaterializationReport] = refresh_online_store
    publish: Callable[[Settings], list[Pointer]] = registry.publish_champions


def run_online_materialization(
    settings: Settings,
    *,
    store: str | None = None,
    groups: Sequence[str] | None = None,
    full_refresh: bool = False,
    publish_champions: bool = True,
    steps: OnlineSteps = OnlineSteps(),
) -> OnlineMaterialization:
    """Refresh the online store (every online group, or ``groups``), then (re)publish every model's
    champion pointer, which the inference service follows instead of the registry. Holds the home
    (models_ml.core.home_lock), so it never copies a half-built feature table."""
    with hold_home(settings, "online materialization"):
        report = steps.refresh(settings, store, groups, full_refresh)
        published = steps.publish(settings) if publish_champions else []
    return OnlineMaterialization(report, list(published))
