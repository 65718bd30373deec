"""The online-materialization flow on the real ten-day slice: full, then incremental, with an artifact."""

from __future__ import annotations

import pytest
from fti_testing import latest_artifact_markdown, query

from models_ml.inference.online.store import open_online_store

pytestmark = pytest.mark.slow

# Every online group of the project: the flights' and the card-fraud example's (built_home holds both), and
# churn's (built there too, empty: churn's slice lands in its own fixture).
GROUPS = ["fg_airport__weather:v1", "fg_card__activity:v1", "fg_card__profile:v1", "fg_carrier__delay_stats:v1",
          "fg_customer__billing_support:v1", "fg_customer__profile:v1", "fg_customer__usage:v1",
          "fg_merchant__activity:v1", "fg_plane__attributes:v1", "fg_plane__delay_stats:v1", "fg_route__delay_stats:v1"]



def test_flow_refreshes_the_store_incrementally_and_reports(prefect_harness, scratch_home):
    from flows.online_materialization import online_materialization

    home = str(scratch_home.home)
    first = online_materialization(store="sqlite", home=home)
    groups = {g["group"]: g for g in first["groups"]}
    assert sorted(groups) == GROUPS and {g["mode"] for g in groups.values()} == {"full"}
    planes = query(scratch_home, "select count(distinct tail_number) from features.fg_plane__attributes_v1")[0][0]
    assert groups["fg_plane__attributes:v1"]["freshness"]["entities"] == planes > 3000
    latest = query(scratch_home, "select max(event_at) from features.fg_airport__weather_v1")[0][0]
    assert groups["fg_airport__weather:v1"]["freshness"]["latest_event_at"] == latest.isoformat()
    assert first["published"] == []  # no model registered in this home

    markdown = latest_artifact_markdown("online-materialization")
    assert "fg_plane__attributes:v1" in markdown and f"{planes:,}" in markdown

    second = online_materialization(store="sqlite", home=home)
    empty = {"fg_customer__billing_support:v1", "fg_customer__profile:v1", "fg_customer__usage:v1"}
    # a group with rows continues from its watermark; an empty one has none yet, so it is read in full (0 rows)
    assert {g["mode"] for g in second["groups"] if g["group"] not in empty} == {"incremental"}
    assert {g["mode"] for g in second["groups"] if g["group"] in empty} == {"full"}
    assert sum(g["rows_written"] for g in second["groups"]) == 0  # nothing new: nothing written
    with open_online_store(scratch_home, "sqlite", create=False) as store:
        fresh = store.freshness()
    assert sorted(fresh) == GROUPS
    assert fresh["fg_airport__weather:v1"].materialized_at.isoformat() == second["materialized_at"]
