"""A model version's reference: the train split of its training snapshot, with the model's score, profiled.

The reference is scored once, when it is first needed, and stored as a profile
(``monitoring.reference_profile``, see :mod:`.profile`), rather than scored at every monitoring run:
the snapshot is immutable and so is the model version, so the profile can never go stale; scoring is the
one step that leaves the engine (LightGBM over every training row), and would otherwise be repeated for
every window; and the stored profile is what a person or a dashboard queries the reference by.

The train split is the snapshot's rows with spine time before the validation cut the registry recorded
for the version (``split.validation_start``). A version registered without its split (a hand-made
registration) is given the whole snapshot, and ``monitoring.references.part`` says so (``all``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from models_ml.core.time import as_utc
from models_ml.inference.batch.predict import score
from models_ml.monitoring.profile import MAX_EXACT_VALUES, NUMERIC, SCORE_FEATURE, bounded_profile_sql, input_kinds
from models_ml.monitoring.scores import bin_of
from models_ml.monitoring.sql import ident
from models_ml.monitoring.tables import REFERENCE_PROFILE, REFERENCES, SCHEMA, ensure_tables
from models_ml.offline.retrieval import utc_literal
from models_ml.offline.store import OfflineStore
from models_ml.training.registry import ModelVersion
from models_ml.training.snapshot import get_snapshot
from models_ml.training.train import Model

_UTC = dt.timezone.utc


class MonitoringError(ValueError):
    """A monitoring request that cannot be honoured; the message names what is missing and the fix."""


@dataclass(frozen=True)
class Reference:
    """A stored reference (a ``monitoring.references`` row)."""

    model_name: str
    version: int
    snapshot_id: str
    part: str  # "train", or "all" when the version's split was not recorded
    spine_time_before: dt.datetime | None
    rows: int
    built_at: dt.datetime
    built_now: bool = False


def get_reference(store: OfflineStore, model_name: str, version: int) -> Reference | None:
    """The stored reference of the version, or None."""
    if not store.exists(SCHEMA, "references"):
        return None
    rows = store.query(f"select * from {REFERENCES} where model_name = ? and version = ?", [model_name, version])
    if not rows:
        return None
    row = rows[0]
    before = row["spine_time_before"]
    return Reference(row["model_name"], int(row["version"]), row["snapshot_id"], row["part"],
                     before.astimezone(_UTC) if before is not None else None, int(row["rows"]),
                     row["built_at"].astimezone(_UTC))


def reference_rows(store: OfflineStore, version: ModelVersion, model: Model) -> tuple[pa.Table, dt.datetime | None]:
    """The model's inputs on its train split and their scores (column :data:`SCORE_FEATURE`), and the
    spine-time cut of the split (None: the whole snapshot)."""
    try:
        info = get_snapshot(store, version.snapshot_id)
    except KeyError as error:
        raise MonitoringError(f"model {version.model_name} v{version.version} was trained on snapshot "
                              f"{version.snapshot_id}, which is not in this warehouse's snapshots.snapshot_registry: "
                              f"its reference cannot be built (retrain the model here)") from error
    table = info.table(store)
    cut = version.split.get("validation_start")
    before = as_utc(cut) if cut else None
    if before is not None:
        table = table.filter(table[info.spine_time] < utc_literal(before))
    features = store.to_arrow(table.select(*model.spec.features))
    if features.num_rows == 0:
        raise MonitoringError(f"the train split of snapshot {info.snapshot_id} (spine time before {before}) is "
                              f"empty: model {version.model_name} v{version.version} has no reference")
    return features.append_column(SCORE_FEATURE, pa.array(score(model, features), pa.float64())), before


def ensure_reference(store: OfflineStore, version: ModelVersion, model: Model, *, rebuild: bool = False) -> Reference:
    """The version's stored reference, built (scored and profiled) when missing or when ``rebuild`` is
    asked for."""
    ensure_tables(store)
    found = get_reference(store, version.model_name, version.version)
    if found is not None and not rebuild:
        return found
    rows, before = reference_rows(store, version, model)
    return write_reference(store, version.model_name, version.version, rows, input_kinds(model.spec),
                           snapshot_id=version.snapshot_id, spine_time_before=before)


def _wide(store: OfflineStore, source: str, kinds: Mapping[str, str]) -> set[str]:
    """The numeric features of ``source`` with (by an estimate) more distinct values than the profile
    keeps exactly: a hint of how to count them fastest (:func:`bounded_profile_sql`), not of the result."""
    numeric = [feature for feature, kind in kinds.items() if kind == NUMERIC]
    if not numeric:
        return set()
    counts = store.query("select " + ", ".join(f"approx_count_distinct({ident(f)}) as c{i}" for i, f in
                                               enumerate(numeric)) + f" from {source}")[0]
    return {f for i, f in enumerate(numeric) if counts[f"c{i}"] > MAX_EXACT_VALUES}


def write_reference(store: OfflineStore, model_name: str, version: int, rows: pa.Table, kinds: Mapping[str, str], *,
                    snapshot_id: str, spine_time_before: dt.datetime | None) -> Reference:
    """Profile ``rows`` (a column per feature of ``kinds``) as the version's reference, replacing any
    earlier one in one transaction."""
    ensure_tables(store)
    scratch = f"_reference_{uuid.uuid4().hex[:12]}"
    store.create_table(SCHEMA, scratch, rows)
    key = [model_name, version]
    try:
        with store.transaction():
            store.execute(f"delete from {REFERENCE_PROFILE} where model_name = ? and version = ?", key)
            store.execute(f"delete from {REFERENCES} where model_name = ? and version = ?", key)
            # bounded for continuous features; the score's buckets stop at its display bins, so the
            # reference's score distribution (scores.py) stays exact
            profile = bounded_profile_sql(f'{SCHEMA}."{scratch}"', kinds, {SCORE_FEATURE: bin_of("value_num")},
                                          wide=_wide(store, f'{SCHEMA}."{scratch}"', kinds))
            store.execute(f"insert into {REFERENCE_PROFILE} select ?, ?, feature, kind, value_num, value_cat, n "
                          f"from ({profile}) p", key)
            store.execute(f"insert into {REFERENCES} values (?, ?, ?, ?, ?, ?, ?)",
                          [*key, snapshot_id, "train" if spine_time_before else "all", spine_time_before,
                           rows.num_rows, dt.datetime.now(_UTC)])
    finally:
        store.drop_table(SCHEMA, scratch)
    built = get_reference(store, model_name, version)
    assert built is not None  # written just above, in this connection
    return dataclasses.replace(built, built_now=True)
