"""The current data of a model version online: the service's prediction log, per hour of arrival.

The log is a SQLite file the service appends to (:mod:`models_ml.inference.online.prediction_log`); the
warehouse does not read SQLite itself, so the rows of the span are read from it
(:func:`~models_ml.inference.online.prediction_log.read_prediction_log`) and copied into a scratch table,
where the engine takes each model input out of the logged JSON row (``features``: the values as served,
the row the model scored) and labels each row with its hour of ``requested_at`` (UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from models_ml.core.time import TimeRange
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.monitoring.current import WINDOW_END, WINDOW_START
from models_ml.monitoring.profile import NUMERIC, SCORE_FEATURE
from models_ml.offline.retrieval import utc_literal
from models_ml.training import registry

SOURCE_ONLINE = "online"
HOUR = dt.timedelta(hours=1)
_UTC_TIME = idt.Timestamp(timezone="UTC")


def read_log(path: Path, since: dt.datetime | None = None) -> pa.Table:
    """The logged predictions that arrived at or after ``since`` (columns ``requested_at``, ``model_name``,
    ``model_version``, ``features``, ``score``), read from the SQLite log at ``path``."""
    table = read_prediction_log(path, since=since)
    return table.select(["requested_at", "model_name", "model_version", "features", "score"])


def hour_windows(span: TimeRange) -> list[TimeRange]:
    """The UTC hours covering ``span`` (from the hour its start falls in)."""
    start = span.start.replace(minute=0, second=0, microsecond=0)
    count = -(-(span.end - start) // HOUR)  # ceiling
    return [TimeRange(start + i * HOUR, start + (i + 1) * HOUR) for i in range(count)]


def _json_value(document: ir.JSONValue, kind: str) -> ir.Value:
    """A model input out of the logged JSON row, typed as the profile counts it (a boolean as 0/1, an
    integer category code as its text, like the reference's cast)."""
    if kind == NUMERIC:
        return ibis.coalesce(document.unwrap_as("float64"), document.unwrap_as("boolean").cast("float64"))
    return ibis.coalesce(document.unwrap_as("string"), document.unwrap_as("int64").cast("string"))


def online_expr(log: ir.Table, version: registry.ModelVersion, kinds: Mapping[str, str],
                span: TimeRange) -> ir.Table:
    """The version's logged rows arriving in ``span``, labelled by UTC hour, with each input and the score."""
    at = log.requested_at.cast(_UTC_TIME)
    rows = log.filter(log.model_name == version.model_name, log.model_version == version.version,
                      at >= utc_literal(span.start), at < utc_literal(span.end))
    at = rows.requested_at.cast(_UTC_TIME)
    document = rows.features.cast("json")
    inputs: dict[str, ir.Value] = {name: _json_value(document[name], kind)
                                   for name, kind in kinds.items() if name != SCORE_FEATURE}
    hour = at.truncate("h")
    return rows.select(**{WINDOW_START: hour, WINDOW_END: hour + ibis.interval(hours=1)}, **inputs,
                       **{SCORE_FEATURE: rows.score.cast("float64")})


def logged_span(log: pa.Table, version: registry.ModelVersion) -> TimeRange | None:
    """From the first to the end of the last hour in which the version's predictions arrived (None: none)."""
    mine = log.filter(pc.and_(pc.equal(log["model_name"], version.model_name),
                              pc.equal(log["model_version"], version.version)))
    if mine.num_rows == 0:
        return None
    times = [dt.datetime.fromisoformat(mine["requested_at"][i].as_py()) for i in (0, mine.num_rows - 1)]
    return TimeRange(times[0].replace(minute=0, second=0, microsecond=0),
                     times[1].replace(minute=0, second=0, microsecond=0) + HOUR)

