"""Feature retrieval: a view's spine joined point-in-time to its feature groups, described by the catalog.

The one place training snapshots and batch inference get their rows from, so the two cannot skew. The
training spine is the view's label model restricted to a window; the inference spine is the view's
``inference_spine`` model (what is to be scored, known before the outcome), or the label model for a view
without one; every feature selection of the view is one
:class:`~models_ml.offline.pit.FeatureSource`; the view's on-demand features are computed from the
joined row. Everything here is a lazy Ibis expression over the offline store's tables, so it runs on any
engine behind the door.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
import pyarrow as pa

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import FeatureView
from models_ml.offline.external import mount_all
from models_ml.offline.on_demand import add_on_demand
from models_ml.offline.pit import (
    FeatureSource,
    TimeBounds,
    point_in_time_join,
    spine_time_bounds,
)
from models_ml.offline.pit_by_source import SpineRowsMultiplied, point_in_time_join_by_source
from models_ml.offline.store import OfflineStore

FOUND_PREFIX = "__fti_found_"  # internal column: the matched row's event time of feature source i


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def spine_columns(view: FeatureView, *, with_target: bool = True) -> list[str]:
    """The label model columns a snapshot keeps, in a fixed order; inference leaves out the target."""
    label = view.label
    join_keys = [spine_col for ref in view.features for spine_col in ref.join_keys]
    return _unique([
        *label.entity, label.spine_time, label.event_time, *([label.target] if with_target else []),
        *label.request_features, *label.slices, *join_keys, *view.on_demand_request_inputs,
    ])


def utc_literal(value: dt.datetime) -> ir.TimestampScalar:
    return ibis.literal(value, type=idt.Timestamp(timezone="UTC"))


def spine_expr(
    store: OfflineStore, view: FeatureView, time_range: TimeRange, *, on: str | None = None,
    with_target: bool = True, relation: tuple[str, str] | None = None,
) -> ir.Table:
    """The rows of the label model (or ``relation``) whose spine time (or the ``on`` column) lies in
    ``[start, end)``, with the columns the snapshot keeps. Batch inference selects from the inference spine,
    by the label's event time and without the target."""
    label = view.label
    schema, name = relation or (label.schema, label.relation)
    table = store.table(schema, name)
    columns = spine_columns(view, with_target=with_target)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{schema}.{name} lacks columns {missing} that view {view.name} needs")
    t = table[on or label.spine_time]
    return table.filter(t >= utc_literal(time_range.start), t < utc_literal(time_range.end)).select(*columns)


def feature_sources(store: OfflineStore, view: FeatureView) -> list[FeatureSource]:
    """One point-in-time source per feature selection of the view, described entirely by the catalog.
    External groups are mounted (and checked against their declaration) first: they are read in place."""
    mount_all(store, [ref.group for ref in view.features])
    return [
        FeatureSource(
            table=store.table(ref.group.schema, ref.group.relation),
            keys=dict(ref.join_keys),
            event_time=ref.group.event_time,
            features=list(ref.columns),  # the model's features, then the on-demand features' inputs
            created_time=ref.group.created_time,
            ttl=ref.group.ttl,
            prefix=ref.prefix,
            unique_event_times=ref.group.unique_grain,
            unique_keys=ref.group.unique_entity,
        )
        for ref in view.features
    ]


def join_features(
    store: OfflineStore, view: FeatureView, spine: ir.Table, sources: Sequence[FeatureSource] | None = None,
    bounds: TimeBounds | None = None,
) -> ir.Table:
    """Every feature of the view joined point-in-time onto ``spine`` at the label's spine time, then the
    view's on-demand features computed from the joined row (:func:`models_ml.offline.on_demand.add_on_demand`).

    The one join training snapshots and batch inference share, so the two cannot skew; ``sources``
    defaults to :func:`feature_sources` (inference passes those same sources, asking for the matched event
    times). The join turns the spine's time ``bounds`` into constant filters on the feature tables (see
    :func:`models_ml.offline.pit.point_in_time_join`); without them, one small query measures them now, so the
    expression is lazy but fixed to the spine as it is at this moment.
    """
    sources = feature_sources(store, view) if sources is None else sources
    spine_time = view.label.spine_time
    bounds = spine_time_bounds(spine, spine_time) if bounds is None else bounds
    return add_on_demand(point_in_time_join(spine, spine_time, sources, spine_time_bounds=bounds), view)


class JoinedRowsMismatch(ValueError):
    """The join gave a different number of rows than the spine has (see :func:`check_joined_rows`)."""


def check_joined_rows(view: FeatureView, bounds: TimeBounds, joined_rows: int) -> None:
    """Refuse a join that changed the number of spine rows. It cannot, unless a feature group that a dbt
    `unique` test declares one row per entity holds duplicates (a failing test leaves the table built), and
    its plain key join then multiplied rows."""
    if bounds.rows is not None and joined_rows != bounds.rows:
        raise _multiplied(view, joined_rows, bounds.rows)


def _multiplied(view: FeatureView, joined_rows: int, spine_rows: int) -> JoinedRowsMismatch:
    unique = sorted(ref.group.name for ref in view.features if ref.group.unique_entity)
    return JoinedRowsMismatch(f"the point-in-time join of view {view.name} gave {joined_rows:,} rows for "
                              f"{spine_rows:,} spine rows: a group declared unique per entity "
                              f"({', '.join(unique)}) has duplicates; run its dbt tests "
                              f"(`dbt test --select <group>`)")


def found_column(index: int) -> str:
    return f"{FOUND_PREFIX}{index}"


def inference_spine(store: OfflineStore, view: FeatureView, window: TimeRange) -> ir.Table:
    """The rows to score whose event time lies in the window (from the view's inference spine, or its label
    model), with the training spine's columns but the target."""
    return spine_expr(store, view, window, on=view.label.event_time, with_target=False,
                      relation=view.scoring_relation)


def inference_sources(store: OfflineStore, view: FeatureView) -> list[FeatureSource]:
    """Training's feature sources, each also giving the matched row's event time (NULL: none within TTL)."""
    return [dataclasses.replace(source, matched_event_time=found_column(index))
            for index, source in enumerate(feature_sources(store, view))]


def features_expr(
    store: OfflineStore, view: FeatureView, window: TimeRange, features: Sequence[str] | None = None,
    bounds: TimeBounds | None = None,
) -> ir.Table:
    """The lazy inference table: entity keys, spine time, event time, the features, one found-marker per group.

    ``features`` limits the feature columns kept (default: all of the view's), which trims the Arrow result;
    ``bounds``: the spine's, see :func:`join_features`.
    """
    joined = join_features(store, view, inference_spine(store, view, window), inference_sources(store, view), bounds)
    return joined.select(*_inference_columns(view, features))


def _inference_columns(view: FeatureView, features: Sequence[str] | None) -> list[str]:
    label = view.label
    features = view.feature_columns if features is None else features
    keep = [*label.entity, label.spine_time, label.event_time, *features]
    return _unique([*keep, *(found_column(i) for i in range(len(view.features)))])


def features_table(
    store: OfflineStore, view: FeatureView, window: TimeRange, features: Sequence[str] | None = None,
) -> tuple[pa.Table, TimeBounds]:
    """:func:`features_expr`'s rows in Arrow, and the spine's time bounds (its row count included).

    Where the engine joins fastest one source at a time (:attr:`OfflineStore.joins_by_source`: DuckDB),
    that is how: the same rows in less time and memory (:mod:`models_ml.offline.pit_by_source`), with the
    on-demand features computed afterwards from the joined Arrow rows by the same UDFs. Elsewhere the lazy
    expression runs as one query, after one small query for the bounds.
    """
    spine, spine_time = inference_spine(store, view, window), view.label.spine_time
    columns = _inference_columns(view, features)
    if not store.joins_by_source:
        bounds = spine_time_bounds(spine, spine_time)
        return store.to_arrow(features_expr(store, view, window, features, bounds)), bounds
    on_demand_inputs = [column for feature in view.on_demand for column in feature.inputs.values()]
    try:
        joined, bounds = point_in_time_join_by_source(
            spine, spine_time, inference_sources(store, view), keep={*columns, *on_demand_inputs},
            execute=store.to_arrow,
        )
    except SpineRowsMultiplied as error:
        raise _multiplied(view, error.rows, error.spine_rows) from None
    if view.on_demand:
        joined = store.to_arrow(add_on_demand(ibis.memtable(joined), view))
    return joined.select(columns), bounds
