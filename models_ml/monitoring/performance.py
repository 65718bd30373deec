"""Performance as labels arrive: a version's batch predictions joined to their outcomes, per window and
slice, in the engine, into ``monitoring.performance``.

The join is the one :mod:`models_ml.inference.batch.outcomes` describes: the predictions table to the view's
label model on the entity keys (a left join, so a row whose outcome has not arrived stays, unlabelled);
the label's slice columns come with the outcome. Per window (day of the event time) and per slice value
(``slice_column``/``slice_value`` empty for every row), the metrics of :mod:`models_ml.training.evaluate`
on the labelled rows, in SQL:

* ``scored``, ``labelled`` (rows with an outcome yet), ``label_share``, ``positives``, ``mean_score``,
  ``positive_rate``;
* ``roc_auc`` by average ranks (the Mann-Whitney statistic, ties counting half), NULL with one class;
* ``pr_auc`` as average precision: the precision at each distinct score, from the highest down, weighted
  by the positives at that score; NULL without positives;
* ``log_loss`` (scores clipped to ``[1e-15, 1 - 1e-15]``), ``brier``, and ``ece`` over ten equal-width
  score bins (the last one closed).

Labels that arrive late are handled by re-running: a window's rows are replaced in one transaction, so a
day computed before its outcomes were all in shows a ``label_share`` below 1 and is brought up to date by
the next run. Sums of doubles are exact decimals (:func:`~models_ml.monitoring.sql.exact_sum`), so a
re-run on the same labels writes the same values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import ibis.expr.types as ir

from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.batch.outcomes import join_outcomes
from models_ml.inference.batch.predict import SCORE
from models_ml.monitoring.current import WINDOW_END, WINDOW_START, version_rows, window_labels
from models_ml.monitoring.sql import exact_sum, ident, text
from models_ml.monitoring.tables import PERFORMANCE
from models_ml.offline.store import OfflineStore
from models_ml.training import registry

METRICS = ("scored", "labelled", "label_share", "positives", "mean_score", "positive_rate", "roc_auc", "pr_auc",
           "log_loss", "brier", "ece")
OVERALL = ""  # slice_column and slice_value of the row for every row
NULL_SLICE = "(null)"  # as the evaluation names a NULL slice value
CALIBRATION_BINS = 10
_CLIP = 1e-15


def slice_column(index: int) -> str:
    return f"slice_{index}"


def labelled_expr(store: OfflineStore, view: FeatureView, relation: tuple[str, str], version: registry.ModelVersion,
                  windows: Sequence[TimeRange]) -> ir.Table:
    """The version's predictions in ``windows`` with their window, score, outcome ``y`` (0/1, NULL until it
    arrives) and the label's slice columns as text (``slice_0``, ... in ``view.label.slices`` order)."""
    label = view.label
    span = TimeRange(windows[0].start, windows[-1].end)
    scored = version_rows(store, relation, version, view, span)
    scored = scored.select(*label.entity, label.event_time, SCORE)
    joined = join_outcomes(store, view, scored, lambda outcomes: {
        "__fti_y": outcomes[label.target].cast("int64"),
        **{slice_column(i): outcomes[s].cast("string") for i, s in enumerate(label.slices)}})
    return joined.select(**window_labels(joined[label.event_time], windows), score=joined[SCORE],
                         y=joined["__fti_y"], **{slice_column(i): joined[slice_column(i)]
                                                 for i in range(len(label.slices))})


def performance_sql(labelled: str, slices: Sequence[str]) -> str:
    """The statement computing every metric of the module docstring per window and slice, from the rows of
    ``labelled`` (:func:`labelled_expr`'s columns); its rows: (window_start, window_end, slice_column,
    slice_value, metric, value)."""
    w = f"{WINDOW_START}, {WINDOW_END}"
    stacked = "\n    union all\n    ".join(
        [f"select {w}, {text(OVERALL)} as slice_column, {text(OVERALL)} as slice_value, score, y from {labelled}"]
        + [f"select {w}, {text(name)}, coalesce({ident(slice_column(i))}, {text(NULL_SLICE)}), score, y "
           f"from {labelled}" for i, name in enumerate(slices)])
    g = f"{w}, slice_column, slice_value"
    clipped = f"least(greatest(score, {_CLIP!r}), {1 - _CLIP!r})"
    return f"""
with
stacked as (
    {stacked}
),
counts as (
    select {g}, count(*) as scored, count(y) as labelled, sum(y) as positives,
           {exact_sum("score")} / count(*) as mean_score,
           {exact_sum(f"case when y is null then null else -(y * ln({clipped}) + (1 - y) * ln(1 - {clipped})) end")}
               as log_loss_sum,
           {exact_sum("case when y is null then null else (score - y) * (score - y) end")} as brier_sum
    from stacked group by 1, 2, 3, 4
),
labelled as (select * from stacked where y is not null),
ranked as (
    select {g}, y,
           rank() over (partition by {g} order by score)
           + (count(*) over (partition by {g}, score) - 1) / 2.0 as average_rank
    from labelled
),
auc as (
    select r.{WINDOW_START}, r.{WINDOW_END}, r.slice_column, r.slice_value,
           (sum(case when r.y = 1 then r.average_rank else 0 end) - max(c.positives) * (max(c.positives) + 1) / 2.0)
           / (max(c.positives) * (max(c.labelled) - max(c.positives))) as roc_auc
    from ranked r join counts c using ({g})
    where c.positives > 0 and c.positives < c.labelled
    group by 1, 2, 3, 4
),
thresholds as (
    select {g}, score, sum(y) as positives, count(*) as rows from labelled group by 1, 2, 3, 4, 5
),
precision_at as (
    select {g}, positives,
           cast(sum(positives) over (partition by {g} order by score desc rows between unbounded preceding
                                     and current row) as double)
           / sum(rows) over (partition by {g} order by score desc rows between unbounded preceding
                             and current row) as precision
    from thresholds
),
average_precision as (
    select p.{WINDOW_START}, p.{WINDOW_END}, p.slice_column, p.slice_value,
           {exact_sum("p.positives * p.precision")} / max(c.positives) as pr_auc
    from precision_at p join counts c using ({g})
    where c.positives > 0
    group by 1, 2, 3, 4
),
calibration as (
    select {g}, least(greatest(floor(score * {CALIBRATION_BINS}), 0), {CALIBRATION_BINS - 1}) as bin,
           {exact_sum("score")} as score_sum, sum(y) as positives
    from labelled group by 1, 2, 3, 4, 5
),
ece as (
    select k.{WINDOW_START}, k.{WINDOW_END}, k.slice_column, k.slice_value,
           {exact_sum("abs(k.score_sum - k.positives)")} / max(c.labelled) as ece
    from calibration k join counts c using ({g})
    group by 1, 2, 3, 4
),
metrics as (
    select {g}, 'scored' as metric, cast(scored as double) as value from counts
    union all select {g}, 'labelled', cast(labelled as double) from counts
    union all select {g}, 'label_share', cast(labelled as double) / scored from counts
    union all select {g}, 'positives', cast(positives as double) from counts
    union all select {g}, 'mean_score', mean_score from counts
    union all select {g}, 'positive_rate', cast(positives as double) / labelled from counts where labelled > 0
    union all select {g}, 'log_loss', log_loss_sum / labelled from counts where labelled > 0
    union all select {g}, 'brier', brier_sum / labelled from counts where labelled > 0
    union all select {g}, 'roc_auc', roc_auc from auc
    union all select {g}, 'pr_auc', pr_auc from average_precision
    union all select {g}, 'ece', ece from ece
)
select {g}, metric, value from metrics where value is not null
"""


@dataclass(frozen=True)
class PerformanceWritten:
    """What :func:`write_performance` did to ``monitoring.performance``."""

    deleted: int
    inserted: int
    computed_at: dt.datetime


def write_performance(store: OfflineStore, labelled: str, slices: Sequence[str], *, model_name: str, version: int,
                      span: TimeRange, computed_at: dt.datetime) -> PerformanceWritten:
    """Replace the rows of every window inside ``span`` (for the model and version) by the metrics of
    ``labelled``, in one transaction."""
    statement = performance_sql(labelled, slices)
    key = [model_name, version]
    with store.transaction():
        deleted = store.execute(f"delete from {PERFORMANCE} where model_name = ? and version = ? "
                                f"and {WINDOW_START} >= ? and {WINDOW_END} <= ?", [*key, span.start, span.end])
        inserted = store.execute(
            f"insert into {PERFORMANCE} select ?, ?, {WINDOW_START}, {WINDOW_END}, slice_column, slice_value, "
            f"metric, value, ? from ({statement}) s", [*key, computed_at])
    return PerformanceWritten(int(deleted[0][0]) if deleted else 0, int(inserted[0][0]) if inserted else 0,
                              computed_at)
