"""A data test stores its failing rows in `audit` only when it fails, and a later passing run drops them, so
`audit` holds the failure of each test's latest run (dbt_project/macros/test_materialization.sql, which
opens a transaction only to drop or store failing rows)."""

from __future__ import annotations

import pytest

from models_ml.features.dbt_runner import DbtBuildError, build
from models_ml.offline.store import opened

TEST = "not_null_fg_airport__weather_v1_airport_code"


def _stored(settings) -> list[tuple]:
    with opened(settings, read_only=True) as store:
        if not store.exists("audit", TEST):
            return []
        return store.execute(f"select airport_code, event_at from audit.{TEST}")


@pytest.mark.slow
def test_a_failure_is_stored_and_the_next_passing_run_drops_it(scratch_home):
    with opened(scratch_home) as store:
        (code, event_at), = store.execute(
            "select airport_code, event_at from features.fg_airport__weather_v1 order by event_at, airport_code limit 1")
        store.execute("update features.fg_airport__weather_v1 set airport_code = null "
                      "where airport_code = ? and event_at = ?", [code, event_at])
    assert _stored(scratch_home) == []

    with pytest.raises(DbtBuildError) as failure:
        build(scratch_home, ["test", "--select", TEST])
    assert TEST in str(failure.value) and "1 failing rows" in str(failure.value)
    assert _stored(scratch_home) == [(None, event_at)]

    with opened(scratch_home) as store:
        store.execute("update features.fg_airport__weather_v1 set airport_code = ? "
                      "where airport_code is null and event_at = ?", [code, event_at])
    run = build(scratch_home, ["test", "--select", TEST])
    assert [o.status for o in run.outcomes if o.resource_type == "test"] == ["pass"]
    assert _stored(scratch_home) == []
    build(scratch_home, ["test", "--select", TEST])  # passing again, with nothing stored to drop
    assert _stored(scratch_home) == []
