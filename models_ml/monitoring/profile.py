"""A table of model inputs as value counts: one row per (window, feature, value) with its count ``n``.

Every drift statistic reads this shape, for the reference and the current data alike, so both go through
the same SQL. It is lossless for what is asked of it (quantiles, both empirical distribution functions,
categories, the range, the NULLs) and much smaller than the rows when a feature has few distinct values.
Numeric features are counted by ``value_num`` (a double), categorical ones by ``value_cat`` (text); a NULL
value (both columns NULL) is the feature's missing count.

A continuous double has about as many distinct values as rows, so its exact counts are as large as the
rows and every statistic would sort them. The stored reference therefore keeps exact counts only for a
numeric feature with at most :data:`MAX_EXACT_VALUES` distinct values; above that it is bounded
(:func:`bounded_profile_sql`): counts per fine reference-quantile bucket, each bucket written as one row at its
largest value, with the minimum a bucket of its own. The cumulative counts at every row, the minimum, the
maximum and the NULLs are still exact, and so is every ``k / B`` quantile for ``B`` dividing
:data:`MAX_EXACT_VALUES` (the drift statistics' bins); only the distribution inside a bucket (less than
``1 / MAX_EXACT_VALUES`` of the rows) is given up. :mod:`.drift` maps current values onto the same buckets.

A feature is categorical exactly when the model encodes it as one (it has categories in the model's
:class:`~models_ml.training.train.ModelSpec`); every other input is numeric, as the model sees it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from models_ml.monitoring.sql import ident, text
from models_ml.training.train import ModelSpec

NUMERIC, CATEGORICAL = "numeric", "categorical"
#: the name the model's score is profiled under, beside its inputs (no dbt column is named like this)
SCORE_FEATURE = "__score__"
#: the most distinct values a numeric feature's reference keeps exactly; above, it keeps as many buckets (about).
#: 10,080 = 2^5 * 3^2 * 5 * 7, so that the k/B quantiles stay exact for every B from 2 to 10, 12, 14, 15, 16, 18, 20
MAX_EXACT_VALUES = 10_080


def input_kinds(spec: ModelSpec) -> dict[str, str]:
    """Each model input (in the model's order) and the score, with its kind."""
    kinds = {name: CATEGORICAL if name in spec.categories else NUMERIC for name in spec.features}
    if SCORE_FEATURE in kinds:
        raise ValueError(f"model input {SCORE_FEATURE!r} clashes with the name the score is profiled under")
    return {**kinds, SCORE_FEATURE: NUMERIC}


def profile_sql(source: str, kinds: Mapping[str, str], group_by: Sequence[str] = ()) -> str:
    """The value counts of ``source`` (a relation whose columns are named like the features): one
    ``union all`` branch per feature of ``kinds``, grouped by the ``group_by`` columns first."""
    keys = [ident(c) for c in group_by]
    branches = []
    for feature, kind in kinds.items():
        column = ident(feature)
        num, cat = (f"cast({column} as double)", "cast(null as varchar)") if kind == NUMERIC else \
            ("cast(null as double)", f"cast({column} as varchar)")
        selected = ", ".join([*keys, f"{text(feature)} as feature", f"{text(kind)} as kind",
                              f"{num} as value_num", f"{cat} as value_cat", "count(*) as n"])
        grouped = ", ".join([*keys, num, cat])
        branches.append(f"select {selected} from {source} group by {grouped}")
    return "\nunion all\n".join(branches)




def bounded_profile_sql(source: str, kinds: Mapping[str, str], breaks: Mapping[str, str] | None = None,
                        wide: Collection[str] = (), max_exact: int = MAX_EXACT_VALUES) -> str:
    """The value counts of ``source`` as :func:`profile_sql` gives them (no window columns), with each
    numeric feature of more than ``max_exact`` distinct values reduced to about ``max_exact`` buckets.

    A value's bucket is ``floor(below * max_exact / total)``, ``below`` the non-NULL count of smaller values
    (integer arithmetic), and the minimum (``below = 0``) is a bucket of its own. A bucket is one row: its
    largest value and its count. So the smallest value whose cumulative count reaches ``k / B`` of the
    rows (a drift bin edge) ends its bucket whenever ``B`` divides ``max_exact``: the values below it have
    ``below < k / B * total``, the next one ``below >= k / B * total``. The values a bucket holds below its
    largest one are fewer than ``total / max_exact``. ``breaks`` maps a feature to an expression of
    ``value_num`` whose value a bucket may not straddle (e.g. the score's display bins).

    One ``union all`` branch per feature, so each sort holds one feature's values. ``wide`` names the
    features expected to have many distinct values: they are ranked row by row (one sort of the rows),
    the others counted by value first (a hash aggregate, then a sort of the distinct values), which is
    faster when values repeat. The result is the same either way."""
    breaks = breaks or {}
    branches = []
    for feature, kind in kinds.items():
        if kind != NUMERIC:
            branches.append(profile_sql(source, {feature: kind}))
            continue
        split = f"cast({breaks[feature]} as double)" if feature in breaks else "cast(null as double)"
        value = f"cast({ident(feature)} as double)"
        if feature in wide:
            counted = f"""
        select value_num, n, below, total,
               max(case when value_num is not null then distinct_below end) over () as distinct_values
        from (
            select value_num, 1 as n, rank() over by_value - 1 as below,
                   dense_rank() over by_value as distinct_below, count(value_num) over () as total
            from (select {value} as value_num from {source}) v
            window by_value as (order by value_num nulls last)
        ) ranked"""
        else:
            counted = f"""
        select value_num, n,
               coalesce(sum(n) over (order by value_num nulls last
                                     rows between unbounded preceding and 1 preceding), 0) as below,
               count(value_num) over () as distinct_values,
               sum(case when value_num is not null then n else 0 end) over () as total
        from (select {value} as value_num, count(*) as n from {source} group by 1) v"""
        branches.append(f"""
select {text(feature)} as feature, {text(NUMERIC)} as kind, max(value_num) as value_num,
       cast(null as varchar) as value_cat, sum(n) as n
from (
    select value_num, n, {split} as break,
           case when value_num is null or distinct_values <= {max_exact} then null
                when below = 0 then -1
                else cast(below * {max_exact} // total as bigint) end as bucket
    from ({counted}
    ) counted
) bucketed
group by bucket, break, case when bucket is null then value_num end, value_num is null""")
    return "\nunion all\n".join(branches)
