"""A table of model inputs as value counts: one row per (window, feature, value) with its count ``n``.

Every drift statistic reads this shape, for the reference and the current data alike, so both go through
the same SQL. It is lossless for what is asked of it (quantiles, both empirical distribution functions,
categories, the range, the NULLs) and much smaller than the rows, since a feature has far fewer distinct
values than rows. Numeric features are counted by ``value_num`` (a double), categorical ones by
``value_cat`` (text); a NULL value (both columns NULL) is the feature's missing count.

A feature is categorical exactly when the model encodes it as one (it has categories in the model's
:class:`~models_ml.training.train.ModelSpec`); every other input is numeric, as the model sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from models_ml.monitoring.sql import ident, text
from models_ml.training.train import ModelSpec

NUMERIC, CATEGORICAL = "numeric", "categorical"
#: the name the model's score is profiled under, beside its inputs (no dbt column is named like this)
SCORE_FEATURE = "__score__"


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
