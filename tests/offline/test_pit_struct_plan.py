"""DuckDB's as-of plan with a tie-break struct: the feature side carries its keys and the struct only, and
every output comes back out of it, a feature the struct cannot order (a list) carried beside it from the
same winning row."""

from __future__ import annotations

import datetime

import ibis
import pyarrow as pa

from models_ml.offline.pit import FeatureSource, point_in_time_join

UTC = datetime.UTC
T0 = datetime.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)
TS = pa.timestamp("us", "UTC")


def test_ties_outputs_and_a_list_feature_come_out_of_the_struct():
    con = ibis.duckdb.connect()
    spine = con.create_table("spine", pa.table({"row_id": [1, 2, 3], "k": [1, 1, 2], "t": pa.array(
        [T0, T0 - HOUR, T0], TS)}))
    features = con.create_table("features", pa.table({
        "k": [1, 1, 1, 2],
        "ev": pa.array([T0 - HOUR, T0 - HOUR, T0 - 2 * HOUR, T0 - 3 * HOUR], TS),
        "created": pa.array([T0, T0 - HOUR, T0 - HOUR, None], TS),
        "x": [10.0, 20.0, None, 40.0],
        "tags": [["latest"], ["older"], ["oldest"], None],
    }))
    source = FeatureSource(features, keys=["k"], event_time="ev", created_time="created", features=["x", "tags"],
                           ttl=2 * HOUR, matched_event_time="found_at")
    expr = point_in_time_join(spine, "t", [source], method="asof")
    rows = sorted(con.to_pyarrow(expr).to_pylist(), key=lambda row: row["row_id"])
    assert [(r["row_id"], r["x"], r["tags"], r["found_at"]) for r in rows] == [
        (1, 10.0, ["latest"], T0 - HOUR),  # a tie on event time: the latest created row, with its list
        (2, 10.0, ["latest"], T0 - HOUR),
        (3, None, None, None),             # its only row is older than the TTL
    ]
