"""Upgrade a model to one trained on v2 of a feature group, then roll it back: model and features move together.

One home, one story, on the real ten-day flights slice: flight_delay v1 (view v1, carrier statistics v1) is
champion; v2 is trained on view v2 (carrier statistics v2). The promotion is first refused, with nothing
changed, while v2's group is not materialized online or not built; then it goes through while the real
service answers an open-loop load, and is rolled back under the same load. Shown: batch inference reads the
v2 group after the upgrade and v1 again after the rollback, with predictions of the window bit for bit those
from before the upgrade; the online store refreshes both carrier versions while both are in use and stops
refreshing v2 once nothing needs it; the service answers every request (no error, none dropped), each
answer naming the model version that scored it and the group versions it read, never a mix; every alias
move is in the history with who, when, why, from and to.
"""

from __future__ import annotations

import json
import threading
import time

import duckdb
import httpx
import pyarrow.compute as pc
import pytest
from fti_testing import copy_home, query
from online_testing import ServerThread, spine_requests
from versioning_testing import MODEL, register_on_view

from bench.open_loop import open_loop
from models_ml.core.time import TimeRange
from models_ml.inference.batch.pipeline import predict_window
from models_ml.inference.batch.predict import table_name
from models_ml.inference.online.materialize import refresh_online_store
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.store import open_online_store
from models_ml.training import registry
from models_ml.training.champion_pointer import pointer_path, read_pointer

pytestmark = pytest.mark.slow

CARRIER_V1, CARRIER_V2 = "fg_carrier__delay_stats:v1", "fg_carrier__delay_stats:v2"
V2_ONLY_FEATURE = "carrier_flight_count_1d"  # a model input of view v2 only
WINDOW = TimeRange.of("2013-01-09", "2013-01-10")  # scheduled departures, UTC, half-open
RATE, SEGMENT_SECONDS = 40, 2  # open-loop load, run in segments until the upgrade and rollback are done


def batch_scores(settings) -> list[tuple]:
    """The window's predictions: (flight, score, model version, view version), by flight."""
    return query(settings, f"select flight_id, score, model_version, feature_view_version from {table_name(MODEL)} "
                           f"where scheduled_departure_at >= ? and scheduled_departure_at < ? order by flight_id",
                 [WINDOW.start, WINDOW.end])


def held_groups(settings) -> dict:
    with open_online_store(settings, "sqlite") as store:
        return store.freshness()


def unchanged_state(settings) -> tuple:
    """What a refused promotion must leave as it was: aliases, history, the champion pointer's bytes."""
    return (registry.get_aliases(settings, MODEL), len(registry.alias_history(settings, MODEL)),
            pointer_path(settings, MODEL).read_bytes())


class Load:
    """Open-loop load in segments, and a probe that reads every answer it gets, until stopped."""

    def __init__(self, port: int, bodies: list[bytes]) -> None:
        self.port, self.bodies = port, bodies
        self.results: list = []
        self.answers: list[tuple[int, dict]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._load), threading.Thread(target=self._probe)]

    def _load(self) -> None:
        while not self.stop.is_set():
            self.results.append(open_loop(self.port, f"/predict/{MODEL}", self.bodies, rate=RATE,
                                          seconds=SEGMENT_SECONDS, connections=8))

    def _probe(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                response = client.post(f"/predict/{MODEL}", content=self.bodies[i % len(self.bodies)],
                                       headers={"content-type": "application/json"})
                self.answers.append((response.status_code, response.json()))
                i += 1
                time.sleep(0.01)

    def wait_for_version(self, version: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1].get("version") == version:
                return
            time.sleep(0.02)
        raise AssertionError(f"the service never answered with v{version}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_upgrade_to_v2_features_and_rollback_move_model_and_features_together(built_home, tmp_path):
    home = copy_home(built_home, tmp_path / "home")
    v1 = register_on_view(home, 1)
    registry.promote(home, MODEL, v1.version, reason="first champion")
    first = refresh_online_store(home, "sqlite")
    # No model needs carrier v2 and it is not the latest: not materialized.
    assert CARRIER_V1 in held_groups(home) and CARRIER_V2 not in held_groups(home)
    assert CARRIER_V2 not in {g.group for g in first.groups}
    predict_window(home, MODEL, WINDOW, num_threads=1)
    before = batch_scores(home)
    assert before and {row[2:] for row in before} == {(1, 1)}

    # Model v2, trained on view v2: its lineage names carrier v2.
    v2 = register_on_view(home, 2)
    assert (v2.version, v2.feature_view_version) == (2, 2)
    assert v2.feature_group_versions["fg_carrier__delay_stats"] == 2
    assert V2_ONLY_FEATURE in v2.features

    # Guard: not materialized online -> refused, nothing changed.
    state = unchanged_state(home)
    with pytest.raises(registry.RegistryError) as refused:
        registry.promote(home, MODEL, v2.version, reason="upgrade")
    print(f"\nguard (online): {refused.value}")
    assert f"group {CARRIER_V2} is not materialized in the online store" in str(refused.value)
    assert unchanged_state(home) == state

    # As challenger, materialization refreshes its carrier v2 beside v1.
    registry.set_alias(home, MODEL, registry.CHALLENGER, v2.version, reason="candidate on view v2")
    side_by_side = refresh_online_store(home, "sqlite")
    assert {CARRIER_V1, CARRIER_V2} <= {g.group for g in side_by_side.groups}
    assert {CARRIER_V1, CARRIER_V2} <= set(held_groups(home))

    # Guard: not built -> refused, nothing changed.
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("alter table features.fg_carrier__delay_stats_v2 rename to hidden_v2")
    try:
        state = unchanged_state(home)
        with pytest.raises(registry.RegistryError) as refused:
            registry.promote(home, MODEL, v2.version, reason="upgrade")
        print(f"guard (built): {refused.value}")
        assert "fg_carrier__delay_stats v2 is not built (no table features.fg_carrier__delay_stats_v2)" in str(refused.value)
        assert unchanged_state(home) == state
    finally:
        with duckdb.connect(str(home.warehouse_path)) as con:
            con.execute("alter table features.hidden_v2 rename to fg_carrier__delay_stats_v2")

    bodies = [json.dumps(item).encode() for item in spine_requests(home, 30)]
    app = create_app(home, poll_seconds=0.05)
    with ServerThread(app) as server, Load(server.port, bodies) as load:
        load.wait_for_version(1)
        registry.promote(home, MODEL, v2.version, reason="upgrade to carrier statistics v2")
        load.wait_for_version(2)
        predict_window(home, MODEL, WINDOW, num_threads=1)
        upgraded = batch_scores(home)
        # Both carrier versions stay fresh while both are in use (v1: the champion a rollback returns to).
        assert {CARRIER_V1, CARRIER_V2} <= {g.group for g in refresh_online_store(home, "sqlite").groups}

        registry.rollback(home, MODEL, reason="roll back to carrier statistics v1")
        load.wait_for_version(1)
        predict_window(home, MODEL, WINDOW, num_threads=1)
        after = batch_scores(home)
        time.sleep(SEGMENT_SECONDS)  # the load goes on for a while after the rollback
    served_log = read_prediction_log(home.prediction_log_path)

    # Batch: v2 read the v2 group; after the rollback the window's predictions are bit for bit the first ones.
    assert {row[2:] for row in upgraded} == {(2, 2)} and [r[0] for r in upgraded] == [r[0] for r in before]
    assert any(a[1] != b[1] for a, b in zip(upgraded, before))
    assert after == before
    assert [r[1].hex() for r in after] == [r[1].hex() for r in before]

    # Online: every scheduled request answered with 200, none dropped or failed.
    sent = sum(r.sent for r in load.results)
    print(f"open-loop: {len(load.results)} segments, {sent} requests at {RATE}/s, "
          f"errors {sum(r.errors for r in load.results)}, statuses "
          f"{sum((r.statuses.get(200, 0) for r in load.results))} x 200; probe answers {len(load.answers)}")
    assert sent == len(load.results) * RATE * SEGMENT_SECONDS and sum(r.errors for r in load.results) == 0
    assert all(r.statuses == {200: r.sent} for r in load.results)
    # Every answer names its model version and the group versions it read, never the other version's.
    assert all(status == 200 for status, _ in load.answers)
    versions = [body["version"] for _, body in load.answers]
    assert {1, 2} <= set(versions)
    for _, body in load.answers:
        carrier = CARRIER_V2 if body["version"] == 2 else CARRIER_V1
        assert carrier in body["feature_groups"] and len(body["feature_groups"]) == 5, body
        assert not {CARRIER_V1, CARRIER_V2} - {carrier} & set(body["feature_groups"])
    # The upgrade happened once and the rollback once: v1 ... v2 ... v1, in that order.
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [1, 2, 1]
    # The prediction log holds every answer (load and probe), each scored with its own version's inputs.
    assert served_log.num_rows == sent + len(load.answers)
    counts = {v: pc.sum(pc.equal(served_log["model_version"], v)).as_py() for v in (1, 2)}
    print(f"predictions by model version: {counts}")
    for version, features in zip(served_log["model_version"].to_pylist(), served_log["features"].to_pylist()):
        assert (V2_ONLY_FEATURE in json.loads(features)) == (version == 2)

    # After the rollback, v2's carrier group is no longer refreshed; v1's is.
    final = refresh_online_store(home, "sqlite")
    assert CARRIER_V2 in final.not_refreshed and CARRIER_V2 not in {g.group for g in final.groups}
    assert CARRIER_V1 in {g.group for g in final.groups}
    pointer = read_pointer(home, MODEL)
    assert pointer.version == 1 and pointer.view.group_versions()["fg_carrier__delay_stats"] == 1

    # Every move of the champion: who, when, why, from, to.
    history = [(h["action"], h["previous_version"], h["version"], h["reason"])
               for h in registry.alias_history(home, MODEL, registry.CHAMPION)]
    assert history == [("promote", None, 1, "first champion"), ("promote", 1, 2, "upgrade to carrier statistics v2"),
                       ("rollback", 2, 1, "roll back to carrier statistics v1")]
    assert all(h["changed_by"] and "@" in h["changed_by"] and h["changed_at"].tzinfo is not None
               for h in registry.alias_history(home, MODEL))
