"""Drift statistics per feature and window, computed in the engine from two value-count profiles.

The reference profile (``monitoring.reference_profile``) and the current one (:func:`profile_sql` over
the window-labelled current rows) go into one SQL statement, whose rows are inserted into
``monitoring.feature_drift`` without leaving the engine. The current values of a numeric feature are first
put on the reference's points (its values, or for a feature of more than
:data:`~.profile.MAX_EXACT_VALUES` distinct values its bucket ends, see :func:`~.profile.bounded_profile_sql`): an
as-of join finds the first reference point at or above each value, and the values of a window falling on
the same point are counted as one row at that point, those strictly between it and the point below as one
row at their largest value, those above the reference's maximum as one row at theirs. So the statistics'
window functions sort at most about three rows per reference point and window, whatever the rows (the
as-of join sorts one feature's values at a time).
Statistics, per window and feature (the score included), NULL values left out of the distributions and
counted on their own:

* ``psi``: population stability index, ``sum((c - r) * ln(c / r))`` over buckets, each share floored at
  :data:`EPSILON` so an empty bucket counts as nearly empty rather than infinitely different. Numeric
  buckets are the reference's ``bins``-quantiles: edge ``k`` is the smallest reference value whose
  cumulative count reaches ``k / bins`` of the non-NULL rows (integer arithmetic, NumPy's
  ``inverted_cdf``), a value belongs to bucket ``#edges < value``; tied edges leave empty buckets, which
  add nothing. A current value below the reference's minimum or above its maximum gets a bucket of its own
  (below, above), as an unseen category does: otherwise a feature the reference holds at one value (a
  visibility of 10 miles) could move anywhere below it without a change of PSI. Exact for a bucketed
  reference too, whenever ``bins`` divides :data:`~.profile.MAX_EXACT_VALUES` (the default does): every
  edge ends a bucket, so the values a bucket or its mapped current row stands for all lie in one bin, and
  the minimum and maximum are kept. Categorical buckets are the reference's categories plus one "unseen"
  bucket for any other value;
* ``ks``: the two-sample Kolmogorov-Smirnov statistic ``sup |F_ref - F_cur|`` (numeric): between two
  consecutive current values ``F_cur`` is constant and ``F_ref`` rises, so the supremum is at a current
  value or just below one. The current's cumulative counts come from a sort of each window's (mapped)
  values, the reference's (at and just below each current value) from one sort of the reference and current
  values together, the reference's first among equal values. Exact when the reference keeps exact values:
  mapping the current values onto them then loses nothing, since ``F_ref`` is constant between two
  reference values and ``F_cur`` is kept at both ends of every such gap. For a bucketed reference it is
  approximate: only ``F_ref`` inside a bucket is unknown, so the value differs from the exact statistic
  by less than the largest share of the reference a bucket holds below its last value, which is below
  ``1 / MAX_EXACT_VALUES`` (about 1e-4);
* ``missing_rate`` (current) and ``missing_rate_change`` (current minus reference);
* ``out_of_range_share``: the share of current non-NULL values below the reference's minimum or above its
  maximum (numeric; exact, as the mapping keeps them apart);
* ``unseen_share``: the share of current non-NULL values in no reference category (categorical);
* ``rows``: the window's current rows, so a large PSI on a handful of rows can be told apart.

Every value is a function of the data alone, whatever the engine's parallel plan: the PSI terms are summed
as fixed-point decimals (exact, so in any order), the other statistics are integer counts, ratios of them
or maxima (running counts in window functions are summed as doubles: exact for integers below 2^53, and
faster there than the 128-bit integers a sum of ``bigint`` gives). A window is idempotent: its rows (for
the model, version and source) are deleted and the new ones inserted in one transaction, so a re-run
replaces them and a reader never sees half of a window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from models_ml.core.time import TimeRange
from models_ml.monitoring.current import WINDOW_END, WINDOW_START
from models_ml.monitoring.profile import CATEGORICAL, MAX_EXACT_VALUES, NUMERIC, profile_sql
from models_ml.monitoring.sql import exact_sum, ident, text
from models_ml.monitoring.tables import FEATURE_DRIFT, REFERENCE_PROFILE
from models_ml.offline.store import OfflineStore

BINS = 10
EPSILON = 1e-4
STATISTICS = ("psi", "ks", "missing_rate", "missing_rate_change", "out_of_range_share", "unseen_share", "rows")
# bucket labels: "#3" a numeric bin ("#<", "#>" below and above the reference), "=red" a category, "?" unseen
_UNSEEN, _NUMERIC_BUCKET, _CATEGORY = "?", "#", "="


def _bin(alias: str, bins: int) -> str:
    """The bucket index of ``alias.value_num`` against the joined edges ``e``: how many edges lie below it."""
    return " + ".join(f"(case when {alias}.value_num > e.e{k} then 1 else 0 end)" for k in range(1, bins))


def _current_on_reference_sql(current: str, kinds: Mapping[str, str], wide: Collection[str]) -> str:
    """The window-labelled value counts of ``current``, each numeric feature's values put on the reference's
    points (the module docstring): one ``union all`` branch per numeric feature, so an as-of join sorts
    one feature's values at a time, and one for the categorical features. The values of a ``wide``
    feature (many reference points) go to the join row by row, the others counted by value first, which
    is faster when values repeat; the result is the same either way."""
    w = f"{WINDOW_START}, {WINDOW_END}"
    branches = []
    for feature, kind in kinds.items():
        if kind != NUMERIC:
            continue
        value = f"cast({ident(feature)} as double)"
        values = f"select {w}, {value} as value_num, 1 as n from {current}" if feature in wide else \
            f"select {w}, {value} as value_num, count(*) as n from {current} group by {w}, value_num"
        branches.append(f"""
    select {w}, {text(feature)} as feature, '{NUMERIC}' as kind, max(value_num) as value_num,
           cast(null as varchar) as value_cat, sum(n) as n
    from (
        select c.{WINDOW_START}, c.{WINDOW_END}, c.value_num, c.n, r.value_num as point
        from ({values}) c
        asof left join (select value_num from ref where feature = {text(feature)} and kind = '{NUMERIC}'
                                                    and value_num is not null) r
        on c.value_num <= r.value_num
    ) mapped
    group by {w}, point, value_num = point, value_num is null""")
    categorical = {feature: kind for feature, kind in kinds.items() if kind != NUMERIC}
    if categorical:
        branches.append(profile_sql(current, categorical, (WINDOW_START, WINDOW_END)))
    return "\n    union all\n".join(branches)


def drift_sql(current: str, kinds: Mapping[str, str], *, bins: int = BINS, epsilon: float = EPSILON,
              wide: Collection[str] = ()) -> str:
    """The statement computing every statistic of the module docstring: its rows are (feature,
    window_start, window_end, statistic, value). ``current`` is the relation of window-labelled current
    rows; parameters: model name and version (the reference's)."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    edges = ",\n               ".join(f"min(case when cum * {bins} >= {k} * total then value_num end) as e{k}"
                                      for k in range(1, bins))
    w = f"{WINDOW_START}, {WINDOW_END}"
    return f"""
with
ref as (
    select feature, kind, value_num, value_cat, n from {REFERENCE_PROFILE} where model_name = ? and version = ?
),
cur as (
    {_current_on_reference_sql(current, kinds, wide)}
),
ref_cum as (
    select feature, value_num,
           sum(cast(n as double)) over (partition by feature order by value_num
                                        rows between unbounded preceding and current row) as cum,
           sum(cast(n as double)) over (partition by feature) as total
    from ref where kind = '{NUMERIC}' and value_num is not null
),
edges as (
    select feature, min(value_num) as lo, max(value_num) as hi, {edges}
    from ref_cum group by feature
),
ref_buckets as (
    select r.feature, '{_NUMERIC_BUCKET}' || cast({_bin("r", bins)} as varchar) as bucket, sum(r.n) as n
    from ref r join edges e on e.feature = r.feature
    where r.kind = '{NUMERIC}' and r.value_num is not null
    group by 1, 2
    union all
    select feature, '{_CATEGORY}' || value_cat as bucket, sum(n) as n
    from ref where kind = '{CATEGORICAL}' and value_cat is not null
    group by 1, 2
),
cur_buckets as (
    select c.{WINDOW_START}, c.{WINDOW_END}, c.feature,
           case when c.value_num < e.lo then '{_NUMERIC_BUCKET}<' when c.value_num > e.hi then '{_NUMERIC_BUCKET}>'
                else '{_NUMERIC_BUCKET}' || cast({_bin("c", bins)} as varchar) end as bucket,
           sum(c.n) as n
    from cur c join edges e on e.feature = c.feature
    where c.kind = '{NUMERIC}' and c.value_num is not null
    group by 1, 2, 3, 4
    union all
    select c.{WINDOW_START}, c.{WINDOW_END}, c.feature, coalesce('{_CATEGORY}' || r.value_cat, '{_UNSEEN}') as bucket,
           sum(c.n) as n
    from cur c left join ref r on r.feature = c.feature and r.kind = '{CATEGORICAL}' and r.value_cat = c.value_cat
    where c.kind = '{CATEGORICAL}' and c.value_cat is not null
    group by 1, 2, 3, 4
),
ref_valid as (select feature, sum(n) as total from ref_buckets group by feature),
cur_valid as (select {w}, feature, sum(n) as total from cur_buckets group by 1, 2, 3),
bucket_keys as (
    select v.{WINDOW_START}, v.{WINDOW_END}, v.feature, r.bucket
    from cur_valid v join ref_buckets r on r.feature = v.feature
    union
    select {w}, feature, bucket from cur_buckets
),
shares as (
    select k.{WINDOW_START}, k.{WINDOW_END}, k.feature, k.bucket,
           greatest(cast(coalesce(r.n, 0) as double) / rv.total, {epsilon!r}) as p_ref,
           greatest(cast(coalesce(c.n, 0) as double) / v.total, {epsilon!r}) as p_cur,
           cast(coalesce(c.n, 0) as double) / v.total as share
    from bucket_keys k
    join cur_valid v on v.{WINDOW_START} = k.{WINDOW_START} and v.{WINDOW_END} = k.{WINDOW_END}
                    and v.feature = k.feature
    join ref_valid rv on rv.feature = k.feature
    left join ref_buckets r on r.feature = k.feature and r.bucket = k.bucket
    left join cur_buckets c on c.{WINDOW_START} = k.{WINDOW_START} and c.{WINDOW_END} = k.{WINDOW_END}
                           and c.feature = k.feature and c.bucket = k.bucket
),
cur_cum as (
    select feature, {w}, value_num, cast(n as double) as cn,
           sum(cast(n as double)) over (partition by feature, {w} order by value_num
                                        rows between unbounded preceding and current row) as c_le
    from cur where kind = '{NUMERIC}' and value_num is not null
),
ks_points as (
    select feature, value_num, 0 as side, cast(null as timestamp with time zone) as {WINDOW_START},
           cast(null as timestamp with time zone) as {WINDOW_END}, cast(n as double) as rn, 0.0 as cn, 0.0 as c_le
    from ref where kind = '{NUMERIC}' and value_num is not null
    union all
    select feature, value_num, 1 as side, {w}, 0.0 as rn, cn, c_le from cur_cum
),
ks_cdf as (
    select feature, {w}, side, value_num, cn, c_le,
           sum(rn) over ks_order as r_le,
           last_value(case when side = 0 then value_num end ignore nulls) over ks_order as ref_value,
           last_value(case when side = 0 then rn end ignore nulls) over ks_order as ref_n
    from ks_points
    window ks_order as (partition by feature order by value_num, side rows between unbounded preceding and current row)
),
ref_totals as (
    select feature, sum(n) as rows, sum(case when value_num is null and value_cat is null then n else 0 end) as missing,
           min(value_num) as lo, max(value_num) as hi
    from ref group by feature
),
cur_totals as (
    select c.{WINDOW_START}, c.{WINDOW_END}, c.feature, max(c.kind) as kind, sum(c.n) as rows,
           sum(case when c.value_num is null and c.value_cat is null then c.n else 0 end) as missing,
           sum(case when c.value_num is not null then c.n else 0 end) as valid,
           sum(case when c.value_num < t.lo or c.value_num > t.hi then c.n else 0 end) as outside,
           max(t.rows) as ref_rows, max(t.missing) as ref_missing
    from cur c join ref_totals t on t.feature = c.feature
    group by 1, 2, 3
),
statistics as (
    select {w}, feature, 'psi' as statistic,
           {exact_sum("(p_cur - p_ref) * ln(p_cur / p_ref)")} as value
    from shares group by 1, 2, 3
    union all
    select {w}, feature, 'unseen_share', sum(case when bucket = '{_UNSEEN}' then share else 0 end)
    from shares where substr(bucket, 1, 1) <> '{_NUMERIC_BUCKET}' group by 1, 2, 3
    union all
    select k.{WINDOW_START}, k.{WINDOW_END}, k.feature, 'ks',
           max(greatest(abs(k.r_le / rv.total - k.c_le / v.total),
                        abs((k.r_le - case when k.ref_value = k.value_num then k.ref_n else 0 end) / rv.total
                            - (k.c_le - k.cn) / v.total)))
    from ks_cdf k
    join ref_valid rv on rv.feature = k.feature
    join cur_valid v on v.{WINDOW_START} = k.{WINDOW_START} and v.{WINDOW_END} = k.{WINDOW_END}
                    and v.feature = k.feature
    where k.side = 1
    group by 1, 2, 3
    union all
    select {w}, feature, 'missing_rate', cast(missing as double) / rows from cur_totals
    union all
    select {w}, feature, 'missing_rate_change', cast(missing as double) / rows - cast(ref_missing as double) / ref_rows
    from cur_totals
    union all
    select {w}, feature, 'out_of_range_share', cast(outside as double) / valid
    from cur_totals where kind = '{NUMERIC}' and valid > 0
    union all
    select {w}, feature, 'rows', cast(rows as double) from cur_totals
)
select feature, {w}, statistic, value from statistics where value is not null
"""


@dataclass(frozen=True)
class DriftWritten:
    """What :func:`write_drift` did to ``monitoring.feature_drift``."""

    deleted: int
    inserted: int
    computed_at: dt.datetime


def write_drift(store: OfflineStore, current: str, kinds: Mapping[str, str], *, model_name: str, version: int,
                source: str, span: TimeRange, computed_at: dt.datetime, bins: int = BINS,
                epsilon: float = EPSILON) -> DriftWritten:
    """Replace the rows of every window inside ``span`` (for the model, version and source) by the
    statistics of ``current``, in one transaction."""
    points = store.query(f"select feature, count(*) as points from {REFERENCE_PROFILE} where model_name = ? and "
                         f"version = ? and kind = '{NUMERIC}' group by feature", [model_name, version])
    wide = {row["feature"] for row in points if row["points"] > MAX_EXACT_VALUES // 2}
    statement = drift_sql(current, kinds, bins=bins, epsilon=epsilon, wide=wide)
    key = [model_name, version, source]
    with store.transaction():
        deleted = store.execute(f"delete from {FEATURE_DRIFT} where model_name = ? and version = ? and source = ? "
                                f"and {WINDOW_START} >= ? and {WINDOW_END} <= ?", [*key, span.start, span.end])
        inserted = store.execute(
            f"insert into {FEATURE_DRIFT} select ?, ?, ?, feature, {WINDOW_START}, {WINDOW_END}, statistic, value, ? "
            f"from ({statement}) s", [*key, computed_at, model_name, version])
    return DriftWritten(int(deleted[0][0]) if deleted else 0, int(inserted[0][0]) if inserted else 0, computed_at)
