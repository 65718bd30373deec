"""The score's distribution per window, beside the reference's: what the report draws and a person compares.

``monitoring.score_distribution`` holds, per model, version, source and window, the count of scores in each
of :data:`SCORE_BINS` equal-width bins of [0, 1] (bin ``k`` is ``[k / B, (k + 1) / B)``, the last one closed),
computed in the engine from the same window-labelled current rows the drift statistics read, and replaced
with them when a window is computed again. The reference's counts are read from its profile
(``monitoring.reference_profile``, feature :data:`~.profile.SCORE_FEATURE`) through the same bin
expression, so both sides are binned alike. PSI and KS of the score are in ``monitoring.feature_drift``;
this table is the picture behind them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models_ml.core.time import TimeRange
from models_ml.monitoring.current import WINDOW_END, WINDOW_START
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.sql import ident
from models_ml.monitoring.tables import REFERENCE_PROFILE, SCORE_DISTRIBUTION
from models_ml.offline.store import OfflineStore

SCORE_BINS = 20


def bin_of(value: str, bins: int = SCORE_BINS) -> str:
    """The bin of a score expression: ``floor(value * bins)``, with 1.0 (and anything above) in the last bin
    and anything below 0 in the first."""
    return f"cast(least(greatest(floor({value} * {bins}), 0), {bins - 1}) as integer)"


def write_score_distribution(store: OfflineStore, current: str, *, model_name: str, version: int, source: str,
                             span: TimeRange, computed_at: dt.datetime) -> int:
    """Replace the counts of every window inside ``span`` by those of ``current`` (a relation with the
    window bounds and :data:`SCORE_FEATURE`), in one transaction; the rows inserted."""
    score = ident(SCORE_FEATURE)
    key = [model_name, version, source]
    with store.transaction():
        store.execute(f"delete from {SCORE_DISTRIBUTION} where model_name = ? and version = ? and source = ? "
                      f"and {WINDOW_START} >= ? and {WINDOW_END} <= ?", [*key, span.start, span.end])
        inserted = store.execute(
            f"insert into {SCORE_DISTRIBUTION} select ?, ?, ?, {WINDOW_START}, {WINDOW_END}, {bin_of(score)} as bin, "
            f"count(*) as n, ? from {current} where {score} is not null group by {WINDOW_START}, {WINDOW_END}, bin",
            [*key, computed_at])
    return int(inserted[0][0]) if inserted else 0


@dataclass(frozen=True)
class ScoreDistribution:
    """Shares of the scores per bin: the reference's and the span's current windows pooled."""

    bins: int
    reference: list[float]
    current: list[float]
    reference_rows: int
    current_rows: int

    @property
    def edges(self) -> list[float]:
        return [k / self.bins for k in range(self.bins + 1)]


def score_distribution(store: OfflineStore, model_name: str, version: int, source: str,
                       span: TimeRange) -> ScoreDistribution:
    """The reference's score shares and the current ones of the windows inside ``span``."""
    reference = store.query(
        f"select {bin_of('value_num')} as bin, sum(n) as n from {REFERENCE_PROFILE} where model_name = ? and "
        f"version = ? and feature = ? and value_num is not null group by bin", [model_name, version, SCORE_FEATURE])
    current = store.query(
        f"select bin, sum(n) as n from {SCORE_DISTRIBUTION} where model_name = ? and version = ? and source = ? "
        f"and {WINDOW_START} >= ? and {WINDOW_END} <= ? group by bin",
        [model_name, version, source, span.start, span.end])

    def shares(rows: list[dict]) -> tuple[list[float], int]:
        counts = [0] * SCORE_BINS
        for row in rows:
            counts[int(row["bin"])] += int(row["n"])
        total = sum(counts)
        return [c / total if total else 0.0 for c in counts], total

    (ref_shares, ref_rows), (cur_shares, cur_rows) = shares(reference), shares(current)
    return ScoreDistribution(SCORE_BINS, ref_shares, cur_shares, ref_rows, cur_rows)
