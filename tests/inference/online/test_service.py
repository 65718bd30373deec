"""The inference service, for real: uvicorn on a loopback port, hit over HTTP.

Runs on the ten-day flights slice with a flight_delay champion (``served_home``): scores and freshness,
batches, validation (422 naming the field, nothing reaching the store), /health, /metrics, the prediction
log, a champion swap under concurrent load, the Redis store, and a service that cannot open the warehouse.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fti_testing import copy_home
from online_testing import MODEL, ServerThread, post_until_stopped, spine_requests, train_champion
from prometheus_client.parser import text_string_to_metric_families

from bench.loopback import free_port, wait_for_port
from models_ml.core.settings import PROJECT_ROOT, load_settings
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.store import UTC, open_online_store
from models_ml.training.champion_pointer import read_pointer
from models_ml.training.registry import publish_champion
from models_ml.training.train import load_model

pytestmark = pytest.mark.slow
GROUPS = {"fg_airport__weather", "fg_carrier__delay_stats", "fg_route__delay_stats", "fg_plane__delay_stats",
          "fg_plane__attributes"}
# Everything the store holds: flight_delay's groups and the card-fraud example's (the test home has both).
STORE_GROUPS = GROUPS | {"fg_card__activity", "fg_card__profile", "fg_merchant__activity"}


class CountingStore:
    """Wraps a store and counts the reads that reach it."""

    def __init__(self, store) -> None:
        self._store = store
        self.reads = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def lookup(self, *args, **kwargs):
        self.reads += 1
        return self._store.lookup(*args, **kwargs)


@pytest.fixture(scope="module")
def home(served_home, tmp_path_factory):
    return copy_home(served_home, tmp_path_factory.mktemp("service") / "home")


@pytest.fixture(scope="module")
def requests_(home):
    return spine_requests(home, 40)


@pytest.fixture(scope="module")
def counting_store(home):
    return CountingStore(open_online_store(home, "sqlite", create=False))


@pytest.fixture(scope="module")
def server(home, counting_store):
    with ServerThread(create_app(home, store=counting_store, poll_seconds=0.2)) as running:
        yield running


def expected_scores(home, items) -> np.ndarray:
    """The champion's scores via training's own encoder, on the features the store holds."""
    pointer = read_pointer(home, MODEL)
    model = load_model(pointer.model_dir)
    with open_online_store(home, "sqlite", create=False) as store:
        as_of = [dt.datetime.fromisoformat(i["prediction_at"]).astimezone(UTC) for i in items]
        found = store.lookup(pointer.view, items, as_of)
    rows = [{**{f: i[f] for f in pointer.view.label.request_features}, **stored} for i, stored in zip(items, found.features)]
    table = pa.Table.from_pylist(rows)
    for name in table.column_names:  # an all-NULL column (e.g. wind gusts) has no type of its own
        if pa.types.is_null(table[name].type):
            kind = pa.string() if name in model.spec.categories else pa.float64()
            table = table.set_column(table.column_names.index(name), name, table[name].cast(kind))
    return model.predict(table)


def test_predict_answers_score_version_and_freshness(server, home, requests_):
    item = requests_[0]
    response = httpx.post(f"{server.url}/predict/{MODEL}", json=item)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["version"] == 1
    assert 0.0 < body["score"] < 1.0
    assert body["score"] == pytest.approx(expected_scores(home, [item])[0], abs=1e-12)
    assert body["as_of"].startswith(item["prediction_at"][:19])
    assert set(body["freshness"]) == GROUPS
    for group, fresh in body["freshness"].items():
        if group in body["missing_groups"]:
            assert fresh is None
        else:
            assert isinstance(fresh["age_seconds"], float) and fresh["event_at"]
    assert body["freshness"]["fg_plane__attributes"] is not None  # every real plane is in the store


def test_batch_scores_equal_single_scores(server, home, requests_):
    response = httpx.post(f"{server.url}/predict/{MODEL}/batch", json=requests_)
    assert response.status_code == 200, response.text
    scores = [p["score"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(scores, expected_scores(home, requests_), rtol=0, atol=1e-12)
    single = [httpx.post(f"{server.url}/predict/{MODEL}", json=r).json()["score"] for r in requests_[:5]]
    assert single == scores[:5]


@pytest.mark.parametrize(("change", "field", "kind"), [
    ({"distance_miles": "far"}, "distance_miles", "int_type"),
    ({"distance_miles": 12.5}, "distance_miles", "int_type"),
    ({"carrier_code": None}, "carrier_code", "string_type"),
    ({"carrier_code": ""}, "carrier_code", "string_too_short"),
    ({"prediction_at": "2013-01-10T20:00:00"}, "prediction_at", "timezone_aware"),
    ({"colour": "red"}, "colour", "extra_forbidden"),
])
def test_a_bad_field_gets_422_naming_it_and_reaches_nothing(server, counting_store, requests_, change, field, kind):
    before = counting_store.reads
    response = httpx.post(f"{server.url}/predict/{MODEL}", json={**requests_[0], **change})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", field], kind)]
    assert counting_store.reads == before


def test_missing_fields_and_bad_bodies_are_422(server, counting_store, requests_):
    before = counting_store.reads
    item = {k: v for k, v in requests_[0].items() if k != "tail_number"}
    response = httpx.post(f"{server.url}/predict/{MODEL}", json=item)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "tail_number"]
    bad_batch = [requests_[0], {**requests_[1], "scheduled_hour_local": "x"}]
    response = httpx.post(f"{server.url}/predict/{MODEL}/batch", json=bad_batch)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", 1, "scheduled_hour_local"]
    response = httpx.post(f"{server.url}/predict/{MODEL}", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    assert httpx.post(f"{server.url}/predict/{MODEL}/batch", json=[]).status_code == 422
    assert counting_store.reads == before


def test_unknown_model_is_404(server, requests_):
    response = httpx.post(f"{server.url}/predict/no_such_model", json=requests_[0])
    assert response.status_code == 404 and "flight_delay" not in response.text  # no list of what is served


def test_health_and_metrics(server, requests_):
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": {MODEL: "ok"}, "prediction_log": "ok"}
    details = httpx.get(f"{server.url}/health/details")
    assert details.status_code == 200
    body = details.json()
    assert body["status"] == "ok" and body["store"] == {"kind": "sqlite", "ready": True}
    assert body["models"][MODEL]["version"] == 1
    assert {g.split(":")[0] for g in body["freshness"]} >= STORE_GROUPS  # (other domains' groups too)

    httpx.post(f"{server.url}/predict/{MODEL}", json=requests_[0])
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests_total = {tuple(sorted(s.labels.items())): s.value for s in families["fti_online_requests"].samples}
    assert requests_total[(("endpoint", "single"), ("model", MODEL), ("status", "200"))] >= 1
    latency = families["fti_online_request_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket") and s.labels["endpoint"] == "single"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1
    assert [s.value for s in families["fti_online_model_version"].samples] == [1.0]
    ages = {s.labels["group"] for s in families["fti_online_feature_age_seconds"].samples}
    assert "fg_plane__attributes:v1" in ages
    assert {s.labels["group"] for s in families["fti_online_store_materialized_age_seconds"].samples} >= {
        f"{g}:v1" for g in STORE_GROUPS}


def test_every_prediction_is_logged(home, requests_, tmp_path):
    logged_home = copy_home(home, tmp_path / "home")
    for old in logged_home.online_dir.glob("prediction_log.sqlite*"):  # the module's server logged too
        old.unlink()
    ids = []
    with ServerThread(create_app(logged_home, poll_seconds=0.2)) as running:
        for item in requests_[:10]:
            ids.append(httpx.post(f"{running.url}/predict/{MODEL}", json=item).json()["prediction_id"])
        batch = httpx.post(f"{running.url}/predict/{MODEL}/batch", json=requests_[10:15]).json()["predictions"]
        ids += [p["prediction_id"] for p in batch]
    log = read_prediction_log(logged_home.prediction_log_path)  # the service flushed on shutdown
    assert sorted(log["prediction_id"].to_pylist()) == sorted(ids)
    first = log.to_pylist()[0]
    assert first["model_name"] == MODEL and first["model_version"] == 1 and 0 < first["score"] < 1
    assert '"flight_id"' in first["entity"] and '"origin_weather_temperature_f"' in first["features"]
    assert first["latency_ms"] > 0
    singles = [uuid.UUID(i) for i in ids[:10]]  # answered one after another: their milliseconds never go back
    assert {u.version for u in singles} == {7}
    assert [u.hex[:12] for u in singles] == sorted(u.hex[:12] for u in singles)


def test_the_log_goes_where_fti_prediction_log_says(home, requests_, tmp_path, monkeypatch):
    monkeypatch.setenv("FTI_PREDICTION_LOG", str(tmp_path / "elsewhere" / "log.sqlite"))
    elsewhere = load_settings(home.home)
    assert elsewhere.prediction_log_path == tmp_path / "elsewhere" / "log.sqlite"
    with ServerThread(create_app(elsewhere, poll_seconds=0.2)) as running:
        answer = httpx.post(f"{running.url}/predict/{MODEL}", json=requests_[0]).json()
    assert read_prediction_log(tmp_path / "elsewhere" / "log.sqlite")["prediction_id"].to_pylist() == [
        answer["prediction_id"]]


def test_a_newly_promoted_champion_is_swapped_in_without_failed_requests(home, requests_, tmp_path):
    swap_home = copy_home(home, tmp_path / "home")
    stop, statuses = threading.Event(), []
    versions_by_client: list[list[int]] = [[] for _ in range(4)]  # each client sends one request at a time

    def swapped() -> bool:
        return all(versions and versions[-1] == 2 for versions in versions_by_client)

    with ServerThread(create_app(swap_home, poll_seconds=0.1, log_predictions=False)) as running:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(post_until_stopped, running.url, requests_, stop, statuses, versions)
                       for versions in versions_by_client]
            time.sleep(0.5)
            train_champion(swap_home, seed=7)  # v2 registered and promoted in the warehouse
            publish_champion(swap_home, MODEL)  # ... and published for the service
            deadline = time.monotonic() + 30
            while not swapped() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
            for c in clients:
                c.result()
        health = httpx.get(f"{running.url}/health/details").json()
    assert statuses and set(statuses) == {200}, f"failed requests during the swap: {set(statuses)}"
    for versions in versions_by_client:
        # Requests of different clients overlap, so only one client's sequence has an order: a request sent
        # after one that got v2 never gets v1 again.
        assert versions[0] == 1 and versions[-1] == 2
        assert versions == sorted(versions)
    assert health["models"][MODEL]["version"] == 2


def test_the_redis_store_serves_the_same_scores(home, requests_, redis_server):
    from models_ml.inference.online.materialize import materialize

    redis_home = home.with_online_store("redis", url=redis_server, prefix="fti-service")
    with open_online_store(redis_home) as store:
        store.client.flushdb()
        materialize(redis_home, store)
    with ServerThread(create_app(redis_home, log_predictions=False)) as running:
        assert httpx.get(f"{running.url}/health/details").json()["store"] == {"kind": "redis", "ready": True}
        response = httpx.post(f"{running.url}/predict/{MODEL}/batch", json=requests_)
    assert response.status_code == 200, response.text
    scores = [p["score"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(scores, expected_scores(home, requests_), rtol=0, atol=1e-12)


def test_the_service_never_opens_the_warehouse(home, requests_, tmp_path):
    """In its own process, with the warehouse replaced by an empty directory: any attempt to open it would
    fail (DuckDB cannot open a directory), and the directory stays empty."""
    isolated = copy_home(home, tmp_path / "home")
    for leftover in isolated.home.glob("warehouse.duckdb*"):
        leftover.unlink()
    isolated.warehouse_path.mkdir()
    (isolated.home / "dbt").exists() and shutil.rmtree(isolated.home / "dbt")  # no manifest to parse either
    port = free_port()
    env = {**os.environ, "FTI_HOME": str(isolated.home), "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "fti.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=90)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/health").status_code == 200
        response = httpx.post(f"{url}/predict/{MODEL}", json=requests_[0])
        assert response.status_code == 200, response.text
        assert 0 < response.json()["score"] < 1
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert isolated.warehouse_path.is_dir() and not any(isolated.warehouse_path.iterdir()), output
    assert not (isolated.home / "dbt").exists()
