"""Time splits of a snapshot: train, validation, test by spine time, never random.

Rows before ``validation_start`` train, rows before ``test_start`` validate, the rest test. Cut times can
be given or derived from fractions of rows; rows sharing a spine time always land in the same split.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.time import UTC, as_utc
from models_ml.offline.retrieval import utc_literal
from models_ml.offline.store import OfflineStore
from models_ml.training.snapshot import SnapshotInfo

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class TimeSplit:
    """How to cut a snapshot by spine time: explicit cut instants, or fractions of rows.

    With ``validation_start``/``test_start`` given, rows with spine time < validation_start train, rows
    < test_start validate, the rest test. Otherwise the cuts are the spine times at the row fractions
    ``fractions`` (train, validation, test) in time order.
    """

    validation_start: dt.datetime | None = None
    test_start: dt.datetime | None = None
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        if (self.validation_start is None) != (self.test_start is None):
            raise ValueError("give both validation_start and test_start, or neither (then fractions apply)")
        if self.validation_start is not None:
            object.__setattr__(self, "validation_start", as_utc(self.validation_start))
            object.__setattr__(self, "test_start", as_utc(self.test_start))
            if not self.validation_start < self.test_start:
                raise ValueError("validation_start must come before test_start")
        if len(self.fractions) != 3 or min(self.fractions) <= 0 or abs(sum(self.fractions) - 1) > 1e-9:
            raise ValueError(f"fractions must be three positive numbers summing to 1, got {self.fractions}")


@dataclass
class Splits:
    """The three time-ordered parts of a snapshot as Arrow tables, with the cut instants used."""

    train: pa.Table
    validation: pa.Table
    test: pa.Table
    validation_start: dt.datetime
    test_start: dt.datetime
    snapshot: SnapshotInfo
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "rows": {"train": self.train.num_rows, "validation": self.validation.num_rows, "test": self.test.num_rows},
        }


def _time_at_row(store: OfflineStore, table: ir.Table, spine_time: str, offset: int) -> dt.datetime:
    """The spine time of the ``offset``-th row by spine time, as a row number rather than ``limit .. offset``:
    Ibis's PySpark backend returns an offset's helper column with the row, which it then cannot read."""
    times = table.select(spine_time)
    position = ibis.row_number().over(order_by=times[spine_time])
    cut = store.to_arrow(times.filter(position == offset).select(spine_time).limit(1))
    return cut[spine_time][0].as_py().astimezone(UTC)


def split_bounds(store: OfflineStore, info: SnapshotInfo, split: TimeSplit) -> tuple[dt.datetime, dt.datetime]:
    """The (validation_start, test_start) instants for ``split`` on this snapshot."""
    if split.validation_start is not None:
        return split.validation_start, split.test_start
    if info.row_count < 3:
        raise ValueError(f"snapshot {info.snapshot_id} has {info.row_count} rows: too few to split")
    table = info.table(store)
    train_fraction, validation_fraction, _ = split.fractions
    first = min(int(info.row_count * train_fraction), info.row_count - 1)
    second = min(int(info.row_count * (train_fraction + validation_fraction)), info.row_count - 1)
    return _time_at_row(store, table, info.spine_time, first), _time_at_row(store, table, info.spine_time, second)


def load_splits(store: OfflineStore, info: SnapshotInfo, split: TimeSplit | None = None) -> Splits:
    """Train / validation / test Arrow tables of a snapshot, cut by spine time, each in a fixed row order.

    The engine is left once (one ``to_pyarrow()``), with the split computed in it; a fixed order (spine
    time, entity keys) keeps training deterministic. Raises ValueError when a part would be empty.
    """
    split = split or TimeSplit()
    validation_start, test_start = split_bounds(store, info, split)
    table = info.table(store)
    t = table[info.spine_time]
    part = ibis.cases(
        (t < utc_literal(validation_start), "train"),
        (t < utc_literal(test_start), "validation"),
        else_="test",
    )
    order = list(dict.fromkeys([info.spine_time, *info.entity]))  # an entity key may be the spine time
    arrow = store.to_arrow(table.mutate(__split=part).order_by(order))
    labels = arrow["__split"]
    arrow = arrow.drop_columns(["__split"])
    parts = {name: arrow.filter(pc.equal(labels, name)) for name in SPLIT_NAMES}
    empty = [name for name, p in parts.items() if p.num_rows == 0]
    if empty:
        raise ValueError(
            f"snapshot {info.snapshot_id} ({info.time_range.start:%Y-%m-%d} to {info.time_range.end:%Y-%m-%d}) "
            f"split at validation {validation_start:%Y-%m-%d %H:%M} / test {test_start:%Y-%m-%d %H:%M} "
            f"leaves {empty} empty"
        )
    return Splits(
        train=parts["train"], validation=parts["validation"], test=parts["test"],
        validation_start=validation_start, test_start=test_start, snapshot=info,
        rows={name: p.num_rows for name, p in parts.items()},
    )
