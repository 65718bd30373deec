"""The point-in-time join executed one feature source at a time, into Arrow.

:func:`models_ml.offline.pit.point_in_time_join` is one lazy expression: a chain of as-of joins. An engine
runs such a chain by holding every source's sorted feature side at once and by carrying the growing row
(the spine, then every earlier source's features) through each source's sort, so the last joins sort the
widest rows. Here the same join is executed in pieces: the spine leaves the engine once and is numbered;
each source is joined, by that same function, onto a narrow copy of the spine (the row number, the spine
time, that source's join keys), only the features asked for come back, and Arrow puts them in place by
row number. Every piece is the lazy join's own rule, so the answer is the same row for row. On DuckDB it
holds one source's feature side at a time and sorts no carried features: batch inference's five groups
join in 0.70x the lazy query's time (bench/batch_inference.py), and a large source joined in passes (spine
time ranges with a short TTL, else disjoint sets of entities) keeps the peak under the hand-written ASOF
query's (bench/pit_join.py). It
suits an embedded engine, where leaving it costs a copy; a distributed one (Spark) keeps the one
expression, where every query is a job.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Collection, Sequence

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from models_ml.offline import pit
from models_ml.offline.pit import FeatureSource, Method, TimeBounds, point_in_time_join

__all__ = ["SpineRowsMultiplied", "point_in_time_join_by_source"]

_ROW = "__fti_spine_row"  # the spine's row number (the join's own "__pit" names are not the caller's to use)
#: the most feature rows one as-of pass sorts: a larger source is joined in passes, by spine time ranges
#: when it has a short TTL, else over disjoint sets of entities (bench/pit_join.py, 5M rows in two passes:
#: 1.16 -> 0.90 GiB peak; by time ranges with a 2-day TTL 0.91x the hand-written query's time, by entity
#: without a TTL 1.14x)
CHUNK_ROWS = 2_500_000


class SpineRowsMultiplied(ValueError):
    """A source gave some spine row more than one row: a table promised one row per key
    (``unique_keys``) holds duplicates. ``rows`` is how many rows it gave for ``spine_rows``."""

    def __init__(self, index: int, rows: int, spine_rows: int) -> None:
        super().__init__(f"feature source #{index} gave {rows:,} rows for {spine_rows:,} spine rows, some spine "
                         f"row more than once: a table promised one row per key (unique_keys) holds duplicates")
        self.index, self.rows, self.spine_rows = index, rows, spine_rows


def _to_arrow(expr: ir.Table) -> pa.Table:
    return expr.to_pyarrow()


def point_in_time_join_by_source(
    spine: ir.Table | pa.Table,
    spine_time: str,
    sources: Sequence[FeatureSource],
    *,
    keep: Collection[str] | None = None,
    method: Method = "auto",
    spine_time_bounds: TimeBounds | None = None,
    execute: Callable[[ir.Table], pa.Table] = _to_arrow,
    chunk_rows: int | None = CHUNK_ROWS,
) -> tuple[pa.Table, TimeBounds]:
    """:func:`~models_ml.offline.pit.point_in_time_join`'s rows, computed one source at a time, in Arrow.

    Returns the joined table (the spine's columns in order, then each source's added columns in order,
    in the spine's row order) and the spine's time bounds (measured here unless given). ``keep`` limits
    the added columns that come back to those named (default: all); ``execute`` runs an expression into
    Arrow (the offline store's ``to_arrow``). Each source's features still all take part in its
    tie-break, as in the lazy join. A source with more than ``chunk_rows`` rows (None: no limit) is
    joined in passes (:func:`_parts`: spine time ranges with a short TTL, else sets of entities by a hash
    of the first join key), so the peak holds one pass's sort. Raises ``ValueError`` as that join does,
    and :class:`SpineRowsMultiplied` where the lazy join would have multiplied spine rows.
    """
    spine_rows = spine if isinstance(spine, pa.Table) else execute(spine)
    spine_rows = spine_rows.combine_chunks()
    pit.check_inputs(ibis.memtable(spine_rows), spine_time, sources)  # every source named by its own index
    if _ROW in spine_rows.column_names:
        raise ValueError(f"the spine has a column {_ROW!r}, which this join reserves for the row number")
    n = spine_rows.num_rows
    keys = list(dict.fromkeys(key for source in sources for key in source.key_map))
    narrow = spine_rows.select([spine_time, *keys]).append_column(_ROW, pa.array(np.arange(n, dtype=np.int64)))
    backend = pit.backend_of(ibis.memtable(spine_rows), sources)
    bounds = spine_time_bounds if spine_time_bounds is not None else pit.spine_time_bounds(ibis.memtable(narrow),
                                                                                           spine_time)
    # A table in the engine, not a view over Arrow: DuckDB's as-of join over a scan of Arrow data takes
    # minutes where over its own table it takes a fraction of a second (no statistics to plan with).
    name = f"__fti_spine_{uuid.uuid4().hex}"
    numbered = backend.create_table(name, narrow, temp=True)
    try:
        joined = spine_rows
        for index, source in enumerate(sources):
            added = [column for column in source.added_columns if keep is None or column in keep]
            if not added:
                continue
            spine_side = numbered.select(_ROW, spine_time, *dict.fromkeys(source.key_map))
            pieces = []
            for spine_part, source_part, part_bounds in _parts(spine_side, spine_time, source, bounds,
                                                               chunk_rows, execute):
                expr = point_in_time_join(spine_part, spine_time, [source_part], method=method,
                                          spine_time_bounds=part_bounds)
                pieces.append(execute(expr.select(_ROW, *added)))
            for column, values in zip(added, _in_spine_order(pa.concat_tables(pieces), n, index).columns):
                joined = joined.append_column(column, values)
    finally:
        backend.drop_table(name, force=True)
    return joined, bounds


_Part = tuple[ir.Table, FeatureSource, TimeBounds]  # one pass: its spine rows, its source, its bounds


def _parts(spine: ir.Table, spine_time: str, source: FeatureSource, bounds: TimeBounds, chunk_rows: int | None,
           execute: Callable[[ir.Table], pa.Table]) -> list[_Part]:
    """The passes a source is joined in: each pass's spine rows, feature rows and spine-time bounds.

    With a TTL shorter than the spine's time span per pass, the spine is cut into equal time ranges: a
    range's rows can only match feature rows from its start less the TTL to its end, which the join's own
    pruning keeps (a plain range filter, cheaper than hashing every row). Otherwise the passes split the
    first join key's values by hash."""
    passes = _passes(spine, source, chunk_rows, execute)
    if passes == 1:
        return [(spine, source, bounds)]
    if (source.ttl is not None and bounds.earliest is not None and bounds.latest is not None
            and bounds.latest - bounds.earliest >= passes * source.ttl):
        return _time_parts(spine, spine_time, source, bounds, passes)
    spine_key, table_key = next(iter(source.key_map.items()))
    return [(spine.filter(_bucket(spine[spine_key], passes) == part),
             dataclasses.replace(source, table=source.table.filter(_bucket(source.table[table_key], passes) == part)),
             bounds)
            for part in range(passes)]


def _time_parts(spine: ir.Table, spine_time: str, source: FeatureSource, bounds: TimeBounds,
                passes: int) -> list[_Part]:
    """``passes`` consecutive spine-time ranges [edge, next edge), the last one closed; spine rows without
    a time (which match nothing) go with the first."""
    step = (bounds.latest - bounds.earliest) / passes
    edges = [bounds.earliest + step * part for part in range(passes)] + [bounds.latest]
    time = spine[spine_time]
    time_type = time.type()
    parts = []
    for part in range(passes):
        start, end = edges[part], edges[part + 1]
        rows = time >= pit.literal_time(start, time_type)
        if part < passes - 1:
            rows &= time < pit.literal_time(end, time_type)
        if part == 0:
            rows |= time.isnull()
        parts.append((spine.filter(rows), source, TimeBounds(start, end)))
    return parts


def _passes(spine: ir.Table, source: FeatureSource, chunk_rows: int | None,
            execute: Callable[[ir.Table], pa.Table]) -> int:
    """How many passes the source is joined in: one unless it has more than ``chunk_rows`` rows and a
    first join key of the same type on both sides (a hash of one value must be the same on either)."""
    if chunk_rows is None or not source.key_map:
        return 1
    spine_key, table_key = next(iter(source.key_map.items()))
    if spine[spine_key].type().copy(nullable=True) != source.table[table_key].type().copy(nullable=True):
        return 1
    rows = execute(source.table.count().as_table()).column(0)[0].as_py()
    return max(1, math.ceil(rows / chunk_rows))


def _bucket(key: ir.Column, passes: int) -> ir.IntegerValue:
    """The pass of a key value: its hash modulo ``passes`` (NULL keys hash too, so no spine row is lost)."""
    return (key.hash() % passes).abs()


def _in_spine_order(pieces: pa.Table, n: int, index: int) -> pa.Table:
    """The source's columns reordered so that row i belongs to spine row i (each row number once)."""
    rows = pieces.column(_ROW).to_numpy()
    if len(rows) < n:  # a left join keeps every row: fewer is a fault of this module, not of the data
        raise RuntimeError(f"feature source #{index} gave {len(rows):,} rows for {n:,} spine rows (lost rows)")
    if len(rows) > n:
        raise SpineRowsMultiplied(index, len(rows), n)
    position = np.empty(n, dtype=np.int64)
    position[rows] = np.arange(n, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    seen[rows] = True
    if not seen.all():  # n rows, but some spine row twice (and another missing)
        raise SpineRowsMultiplied(index, len(rows), n)
    return pieces.drop_columns([_ROW]).take(position)
