"""The inference service against hostile input, for real: uvicorn on loopback (configured as ``fti serve``
configures it), hit over HTTP and raw sockets.

Each input an attacker-style review found: its status and body, the server still healthy after it, and for
the large bodies the memory it cost (the peak RSS of this process, which runs the server, stays under a
bound). Then the prediction log surviving a record it cannot write and a writer thread that dies, its
retention and disk guard, load shedding, a 500 without internals, and the optional bearer token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import logging
import socket
import sqlite3
import sys
import time

import httpx
import pytest
from fti_testing import copy_home
from online_testing import MODEL, ServerThread, spine_requests
from prometheus_client.parser import text_string_to_metric_families

from models_ml.inference.online.prediction_log import LogRetention, PredictionLog, read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.serving.config import MIB, ServeConfig, is_loopback
from models_ml.inference.online.store import OnlineStoreError, open_online_store

pytestmark = pytest.mark.slow
JSON = {"content-type": "application/json"}
TOKEN = "s3cret-token"


class FlakyStore:
    """Wraps a store; ``fail`` (an exception), when set, is raised by every lookup."""

    def __init__(self, store) -> None:
        self._store = store
        self.fail: Exception | None = None

    def __getattr__(self, name):
        return getattr(self._store, name)

    def lookup(self, *args, **kwargs):
        if self.fail is not None:
            raise self.fail
        return self._store.lookup(*args, **kwargs)


@pytest.fixture(scope="module")
def home(served_home, tmp_path_factory):
    settings = copy_home(served_home, tmp_path_factory.mktemp("hostile") / "home")
    for old in settings.online_dir.glob("prediction_log.sqlite*"):
        old.unlink()
    return settings


@pytest.fixture(scope="module")
def item(home):
    return spine_requests(home, 1)[0]


@pytest.fixture(scope="module")
def store(home):
    return FlakyStore(open_online_store(home, "sqlite", create=False))


@pytest.fixture(scope="module")
def server(home, store):
    """Default limits but short timeouts (so the slow-client tests are quick); the prediction log on."""
    config = ServeConfig(timeout_request=1.0, timeout_keep_alive=1.5)
    with ServerThread(create_app(home, store=store, poll_seconds=0.1, config=config)) as running:
        yield running


@pytest.fixture(scope="module")
def guarded(home):
    """A token, a roomy body limit (so the parser's own bounds are what is tested), tight concurrency caps."""
    config = ServeConfig(token=TOKEN, max_body_bytes=32 * MIB, max_in_flight=2, max_connections=6,
                         timeout_request=3.0)
    with ServerThread(create_app(home, poll_seconds=0.1, log_predictions=False, config=config)) as running:
        yield running


AUTH = {"authorization": f"Bearer {TOKEN}", **JSON}


def post(server, body: bytes, *, batch: bool = False, headers=None) -> httpx.Response:
    """``body`` sent in 64 KiB pieces under its Content-Length: handed a whole body, the HTTP client copies
    the unsent rest after every partial write (two copies of a 17 MB body at once), memory this process's
    peak RSS would charge to the server it measures."""
    path = f"/predict/{MODEL}" + ("/batch" if batch else "")
    pieces = (body[start:start + 64 * 1024] for start in range(0, len(body), 64 * 1024))
    headers = {**(headers or JSON), "content-length": str(len(body))}
    return httpx.post(server.url + path, content=pieces, headers=headers, timeout=30)


def assert_healthy(server, item, headers=None) -> None:
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    ok = httpx.post(f"{server.url}/predict/{MODEL}", json=item, headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text


def peak_growth_mb(action) -> float:
    """How far this process's peak RSS rose above its RSS while ``action`` ran (MB)."""
    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS on this kernel")
    before = status("VmRSS:")
    action()
    return (status("VmHWM:") - before) / 1024


def raw(port: int, data: bytes, *, wait: float = 5.0, send_slowly: bool = False) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; what came back within ``wait`` seconds and whether the server
    closed the connection."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(wait)
    got, closed = b"", False
    try:
        try:
            sock.sendall(data)
        except OSError:  # the server answered and closed before taking it all: read what it said
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    finally:
        sock.close()
    return got, closed


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


# -- values that passed validation and broke what came after --------------------------------------------------


@pytest.mark.parametrize(("change", "field", "kind"), [
    ({"prediction_at": "0001-01-01T00:00:00+01:00"}, "prediction_at", "datetime_range"),  # overflowed the log
    ({"prediction_at": "9999-12-31T23:59:59-01:00"}, "prediction_at", "datetime_range"),
    ({"prediction_at": "1899-12-31T23:59:59+00:00"}, "prediction_at", "datetime_range"),
    ({"prediction_at": "2200-12-31T23:30:00-01:00"}, "prediction_at", "datetime_range"),  # 2201 in UTC
    ({"prediction_at": 1357819200}, "prediction_at", "datetime_type"),  # a Unix time: refused, not guessed
    ({"prediction_at": 1357819200.5}, "prediction_at", "datetime_type"),
    ({"prediction_at": "1357819200"}, "prediction_at", "datetime_from_date_parsing"),
    ({"prediction_at": "2013-01-10T20:00:00"}, "prediction_at", "timezone_aware"),
    ({"distance_miles": 2**63}, "distance_miles", "less_than_equal"),  # was scored
    ({"distance_miles": -(2**63) - 1}, "distance_miles", "greater_than_equal"),
    ({"distance_miles": True}, "distance_miles", "int_type"),
])
def test_values_beyond_what_can_be_logged_and_scored_are_422(server, item, change, field, kind):
    response = httpx.post(f"{server.url}/predict/{MODEL}", json={**item, **change})
    assert response.status_code == 422, response.text
    body = response.json()
    assert [(e["loc"], e["type"]) for e in body["detail"]] == [(["body", field], kind)]
    assert body["error_count"] == 1
    if kind == "datetime_type":
        assert "ISO 8601" in body["detail"][0]["msg"] and "offset" in body["detail"][0]["msg"]
    assert_healthy(server, item)


def test_the_edges_of_the_accepted_ranges_are_scored_and_logged(server, item):
    for change in ({"prediction_at": "1900-01-01T00:00:00+00:00"}, {"prediction_at": "2200-12-31T23:59:59Z"},
                   {"distance_miles": 1}, {"distance_miles": 12500},
                   {"scheduled_hour_local": 0}, {"scheduled_hour_local": 23}):
        response = httpx.post(f"{server.url}/predict/{MODEL}", json={**item, **change})
        assert response.status_code == 200, (change, response.text)


def test_an_integer_of_400_digits_is_422_not_500(server, item):
    body = json.dumps(item).replace(f'"distance_miles": {item["distance_miles"]}',
                                    '"distance_miles": 1' + "0" * 400).encode()
    response = post(server, body)
    assert response.status_code == 422, response.text
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body", "distance_miles"],
                                                                           "less_than_equal")]
    assert "OverflowError" not in response.text
    assert_healthy(server, item)


@pytest.mark.parametrize(("body", "kind", "loc"), [
    (b'{"carrier_code": "UA", "carrier_code": "AA"}', "duplicate_key", ["body", "carrier_code"]),
    (b'{"distance_miles": NaN}', "json_invalid", ["body"]),
    (b'{"distance_miles": Infinity}', "json_invalid", ["body"]),
    (b'{"carrier_code": "\\ud800"}', "json_invalid", ["body"]),  # a lone surrogate: SQLite cannot store it
    (b"[" * 200_000 + b"]" * 200_000, "json_invalid", ["body"]),  # nesting deeper than the parser's stack
    (b'{"carrier_code": "UA"} {"x": 1}', "json_invalid", ["body"]),
    (b"\xff\xfe{}", "json_invalid", ["body"]),
    (b"", "json_invalid", ["body"]),
])
def test_malformed_json_is_422_naming_the_problem(server, item, body, kind, loc):
    if kind == "duplicate_key":
        body = json.dumps({**item, "carrier_code": "UA"})[:-1].encode() + b', "carrier_code": "AA"}'
    response = post(server, body)
    assert response.status_code == 422, response.text
    first = response.json()["detail"][0]
    assert (first["loc"], first["type"]) == (loc, kind)
    if kind == "duplicate_key":
        assert "carrier_code" in first["msg"]
    assert_healthy(server, item)


def test_a_duplicate_key_in_a_batch_item_names_the_item(server, item):
    body = b"[" + json.dumps(item).encode() + b"," + json.dumps(item)[:-1].encode() + b', "tail_number": "N1"}]'
    response = post(server, body, batch=True)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", 1, "tail_number"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_is_415(server, item, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(f"{server.url}/predict/{MODEL}", content=json.dumps(item), headers=headers)
    assert response.status_code == 415, response.text
    assert_healthy(server, item)


def test_json_with_a_charset_is_accepted(server, item):
    response = httpx.post(f"{server.url}/predict/{MODEL}", content=json.dumps(item),
                          headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text


# -- unbounded work per request -------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_before_it_is_read(server, item):
    head = (f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MIB}\r\n\r\n").encode()
    started = time.monotonic()
    growth = peak_growth_mb(lambda: responses.append(raw(server.port, head + b"[" * 1000, wait=5)))
    response, closed = responses.pop()
    assert status_of(response) == 413 and closed and time.monotonic() - started < 3  # closed at timeout_request
    assert b"1048576" in response
    assert growth < 16, f"peak RSS grew {growth:.0f} MB"
    assert_healthy(server, item)


responses: list = []


def test_a_chunked_body_over_the_limit_is_413_while_read(server, item):
    def chunks():
        for _ in range(40):  # 40 x 256 KiB = 10 MiB, with no Content-Length
            yield b" " * (256 * 1024)

    growth = peak_growth_mb(lambda: responses.append(
        httpx.post(f"{server.url}/predict/{MODEL}", content=chunks(), headers=JSON, timeout=30)))
    response = responses.pop()
    assert response.status_code == 413, response.text
    assert growth < 24, f"peak RSS grew {growth:.0f} MB"
    assert_healthy(server, item)


def test_a_million_unknown_keys_is_413_and_fifty_thousand_get_twenty_errors(server, item):
    huge = json.dumps({**item, **{f"unknown_{i}": 1 for i in range(1_000_000)}}).encode()
    assert len(huge) > 16 * MIB
    growth = peak_growth_mb(lambda: responses.append(post(server, huge)))
    assert responses.pop().status_code == 413
    assert growth < 24, f"peak RSS grew {growth:.0f} MB"
    huge = b""

    many = json.dumps({**item, **{f"k{i}": 1 for i in range(50_000)}}).encode()
    assert len(many) < MIB
    growth = peak_growth_mb(lambda: responses.append(post(server, many)))
    response = responses.pop()
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 20 and body["error_count"] == 50_000
    assert {e["type"] for e in body["detail"]} == {"extra_forbidden"}
    assert len(response.content) < 4096  # was one error per key (~90 MB for a million)
    assert growth < 48, f"peak RSS grew {growth:.0f} MB"
    assert_healthy(server, item)


def test_a_huge_unknown_key_is_echoed_cut(server, item):
    response = httpx.post(f"{server.url}/predict/{MODEL}", json={**item, "k" * 100_000: 1})
    assert response.status_code == 422 and len(response.content) < 1024


def test_a_million_item_batch_stops_at_the_cap_while_parsed(guarded, item):
    body = b"[" + b"{}," * 999_999 + b"{}]"
    growth = peak_growth_mb(lambda: responses.append(post(guarded, body, batch=True, headers=AUTH)))
    response = responses.pop()
    assert response.status_code == 422, response.text
    assert [(e["loc"], e["type"]) for e in response.json()["detail"]] == [(["body"], "too_long")]
    assert growth < 32, f"peak RSS grew {growth:.0f} MB"  # 1M validated objects would be hundreds
    bad = post(guarded, json.dumps([{"colour": i} for i in range(1000)]).encode(), batch=True, headers=AUTH)
    assert bad.status_code == 422 and len(bad.json()["detail"]) == 20 and bad.json()["error_count"] == 1000
    assert_healthy(guarded, item, headers=AUTH)


def test_unknown_models_share_one_metric_series_and_404s_list_nothing(server, item):
    with httpx.Client() as http:
        for i in range(200):
            response = http.post(f"{server.url}/predict/probe_{i}", json=item)
            assert response.status_code == 404 and MODEL not in response.text
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    models = {s.labels["model"] for f in families.values() for s in f.samples if "model" in s.labels}
    assert models == {MODEL, "unknown"}


# -- the server's own limits: heads, slow clients, idle connections, concurrency ------------------------------


def test_a_request_head_over_the_limit_is_431(server, item):
    for head in (f"POST /predict/{MODEL}?{'a' * 20_000} HTTP/1.1\r\nHost: x\r\n\r\n",
                 f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 20_000}\r\n\r\n",
                 f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: a\r\n" for i in range(3000)),
                 f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\nX-Unended: {'a' * 100_000}"):  # never ends
        response, closed = raw(server.port, head.encode(), wait=3)
        assert status_of(response) == 431 and closed, response[:200]
    assert_healthy(server, item)


def test_a_slow_client_is_cut_off(server, item):
    started = time.monotonic()
    response, closed = raw(server.port, f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\n".encode(), wait=5)
    assert status_of(response) == 408 and closed and time.monotonic() - started < 3  # timeout_request: 1 s
    body_missing = (f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: 500\r\n\r\n{{").encode()
    response, closed = raw(server.port, body_missing, wait=5)
    assert status_of(response) == 408 and closed
    assert_healthy(server, item)


def test_an_idle_connection_is_closed(server):
    started = time.monotonic()
    response, closed = raw(server.port, b"", wait=5)
    assert response == b"" and closed and time.monotonic() - started < 4  # timeout_keep_alive: 1.5 s


def test_over_the_in_flight_cap_requests_are_shed_with_503(guarded, item):
    head = (f"POST /predict/{MODEL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    waiting = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(2)]  # max_in_flight: 2
    try:
        for sock in waiting:
            sock.sendall(head)  # ... and the body never comes: both requests stay in flight
        time.sleep(0.2)
        shed = httpx.post(f"{guarded.url}/predict/{MODEL}", json=item, headers=AUTH)
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1", shed.text
    finally:
        for sock in waiting:
            sock.close()
    time.sleep(0.2)
    assert_healthy(guarded, item, headers=AUTH)


def test_over_the_connection_cap_requests_get_503(guarded, item):
    idle = [socket.create_connection(("127.0.0.1", guarded.port)) for _ in range(6)]  # max_connections: 6
    try:
        time.sleep(0.2)
        response, _ = raw(guarded.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait=2)
        assert status_of(response) == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert_healthy(guarded, item, headers=AUTH)


# -- failures: no internals in the answer ---------------------------------------------------------------------


def test_a_failure_is_a_500_with_a_request_id_and_no_internals(server, store, item, caplog):
    store.fail = RuntimeError("secret detail at /srv/fti/models")
    try:
        with caplog.at_level(logging.ERROR, logger="fti.online"):
            response = httpx.post(f"{server.url}/predict/{MODEL}", json=item)
        assert response.status_code == 500
        body = response.json()
        assert set(body) == {"detail", "request_id"} and "secret" not in response.text
        assert response.headers["x-request-id"] == body["request_id"]
        logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
        assert logged and "secret detail" in str(logged[0].exc_info[1])
        store.fail = OnlineStoreError("cannot reach redis://admin:hunter2@10.0.0.7:6379")
        response = httpx.post(f"{server.url}/predict/{MODEL}", json=item)
        assert response.status_code == 503 and "hunter2" not in response.text and response.json()["request_id"]
    finally:
        store.fail = None
    assert_healthy(server, item)


# -- /health and the prediction log ---------------------------------------------------------------------------


def test_health_is_minimal_and_details_have_the_rest(server):
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": {MODEL: "ok"}, "prediction_log": "ok"}
    details = httpx.get(f"{server.url}/health/details").json()
    assert details["models"][MODEL]["pointer"].endswith("champion.json")
    assert details["prediction_log"]["alive"] is True


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_the_log_writer_survives_a_record_it_cannot_write_and_logs_later_requests(server, home, item):
    log = server.app.state.fti.log
    errors = log.errors
    year_one = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # what once passed validation
    log.submit(("poison-1", year_one, MODEL, 1, year_one, {}, 0.5, [], {}, {}, {}, 1.0))
    log.submit(("poison-2", dt.datetime.now(dt.timezone.utc), MODEL, 1, dt.datetime.now(dt.timezone.utc), {},
                0.5, [], {}, {}, {"s": "\ud800"}, 1.0))  # a string SQLite cannot encode
    ids = [httpx.post(f"{server.url}/predict/{MODEL}", json=item).json()["prediction_id"] for _ in range(3)]
    wait_for(lambda: log.pending == 0 and log.errors >= errors + 1)
    logged = set(read_prediction_log(home.prediction_log_path)["prediction_id"].to_pylist())
    assert set(ids) <= logged and "poison-1" not in logged
    assert log.alive and httpx.get(f"{server.url}/health").json()["status"] == "ok"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f"fti_online_prediction_log_errors {float(log.errors)}" in metrics
    assert "fti_online_prediction_log_up 1.0" in metrics


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_writer_thread_is_restarted_and_health_says_degraded_meanwhile(server, home, item):
    log = server.app.state.fti.log

    def die() -> None:
        raise SystemExit  # not an Exception: ends the thread, as nothing in the writer could

    log._loop = die  # every (re)started thread dies at once while this holds
    try:
        log._stop.set()  # let the current thread leave its loop (a restart clears the way below)
        log._wake.set()
        wait_for(lambda: not log.alive)
        log._stop.clear()
        wait_for(lambda: log.restarts > 0)  # the watcher restarts it (and it dies again)
        wait_for(lambda: httpx.get(f"{server.url}/health").json()["prediction_log"] == "degraded")
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert "SystemExit" not in health.text and "/" not in json.dumps(health.json())
    finally:
        del log._loop
    wait_for(lambda: log.alive and httpx.get(f"{server.url}/health").json()["status"] == "ok")
    prediction_id = httpx.post(f"{server.url}/predict/{MODEL}", json=item).json()["prediction_id"]
    wait_for(lambda: prediction_id in read_prediction_log(home.prediction_log_path)["prediction_id"].to_pylist())


def _record(i: int, at: dt.datetime, payload: str = "") -> tuple:
    return (f"p{i}", at, MODEL, 1, at, {"flight_id": i}, 0.5, [], {}, {"x": payload}, {}, 1.0)


def _count(path) -> int:
    with sqlite3.connect(path) as con:
        return con.execute("select count(*) from prediction_log").fetchone()[0]


def test_retention_prunes_by_age_rows_and_size(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, flush_seconds=0.05, retention=LogRetention(
        max_age_days=30, max_rows=None, max_bytes=None, min_free_bytes=None, prune_seconds=3600)).start()
    for i in range(300):
        log.submit(_record(i, now - dt.timedelta(days=40 if i < 200 else 1)))
    wait_for(lambda: log.written == 300)
    assert log.prune() == 200 and _count(path) == 100
    log.retention = dataclasses.replace(log.retention, max_rows=30)
    assert log.prune() == 70 and _count(path) == 30
    with sqlite3.connect(path) as con:
        assert min(r[0] for r in con.execute("select prediction_id from prediction_log")) == "p270"
    log.retention = dataclasses.replace(log.retention, max_rows=None, max_bytes=256 * 1024)
    for i in range(300, 1300):
        log.submit(_record(i, now, payload="x" * 1000))  # ~1 MB
    wait_for(lambda: log.written == 1300)
    log.prune()
    with sqlite3.connect(path) as con:
        live = (con.execute("pragma page_count").fetchone()[0]
                - con.execute("pragma freelist_count").fetchone()[0]) * con.execute("pragma page_size").fetchone()[0]
        newest = con.execute("select max(rowid) from prediction_log").fetchone()[0]
        assert con.execute("select count(*) from prediction_log where rowid = ?", [newest]).fetchone()[0] == 1
    assert live <= 256 * 1024
    log.close()


def test_age_retention_keeps_young_rows_inserted_before_older_ones(tmp_path):
    """Two workers append to one log a batch at a time: a row can be inserted before an older one. Age
    retention deletes by arrival time, so a young row is kept whatever its place in the file."""
    now = dt.datetime.now(dt.timezone.utc)
    path = tmp_path / "log.sqlite"
    retention = LogRetention(max_age_days=30, max_rows=None, max_bytes=None, min_free_bytes=None,
                             prune_seconds=3600)
    first, second = (PredictionLog(path, flush_seconds=0.05, retention=retention).start() for _ in range(2))
    first.submit(_record(0, now))  # arrived last, written first
    wait_for(lambda: first.written == 1)
    second.submit(_record(1, now - dt.timedelta(minutes=1)))
    second.submit(_record(2, now - dt.timedelta(days=40)))
    wait_for(lambda: second.written == 2)
    assert second.prune() == 1
    assert sorted(read_prediction_log(path)["prediction_id"].to_pylist()) == ["p0", "p1"]
    first.close()
    second.close()


def test_retention_runs_in_the_writer_and_the_disk_guard_pauses_it(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    path = tmp_path / "log.sqlite"
    log = PredictionLog(path, flush_seconds=0.05, retention=LogRetention(
        max_age_days=None, max_rows=10, max_bytes=None, min_free_bytes=None, prune_seconds=0.1)).start()
    for i in range(50):
        log.submit(_record(i, now))
    wait_for(lambda: log.written == 50 and _count(path) == 10)  # pruned by the thread on its own
    log.retention = dataclasses.replace(log.retention, min_free_bytes=2**62)  # more than any disk has
    wait_for(lambda: log.paused)
    assert not log.healthy
    dropped = log.dropped
    log.submit(_record(100, now))
    assert log.dropped == dropped + 1
    log.retention = dataclasses.replace(log.retention, min_free_bytes=None)
    wait_for(lambda: not log.paused)
    log.submit(_record(101, now))
    wait_for(lambda: log.written == 51)
    log.close()


# -- authentication -------------------------------------------------------------------------------------------


def test_with_a_token_predict_and_admin_routes_need_it(guarded, item):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                    {"authorization": TOKEN}):
        predict = httpx.post(f"{guarded.url}/predict/{MODEL}", json=item, headers=headers)
        assert predict.status_code == 401 and predict.headers["www-authenticate"].startswith("Bearer")
        assert httpx.post(f"{guarded.url}/predict/no_such/batch", json=[item], headers=headers).status_code == 401
        assert httpx.get(f"{guarded.url}/metrics", headers=headers).status_code == 401
        assert httpx.get(f"{guarded.url}/health/details", headers=headers).status_code == 401
    assert httpx.get(f"{guarded.url}/health").json()["status"] == "ok"  # for load balancers: no token needed
    assert httpx.post(f"{guarded.url}/predict/{MODEL}", json=item, headers=AUTH).status_code == 200
    assert httpx.post(f"{guarded.url}/predict/{MODEL}", json=item,
                      headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert httpx.get(f"{guarded.url}/metrics", headers=AUTH).status_code == 200
    assert httpx.get(f"{guarded.url}/health/details", headers=AUTH).json()["store"]["ready"] is True


def test_without_a_token_everything_is_open(server, item):
    assert httpx.post(f"{server.url}/predict/{MODEL}", json=item).status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def test_the_token_comes_from_the_environment_or_a_file(tmp_path):
    assert ServeConfig.from_env({}).token is None
    assert ServeConfig.from_env({"FTI_SERVE_TOKEN": "abc"}).token == "abc"
    (tmp_path / "token").write_text("from-file\n")
    assert ServeConfig.from_env({"FTI_SERVE_TOKEN_FILE": str(tmp_path / "token")}).token == "from-file"
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty"):
        ServeConfig.from_env({"FTI_SERVE_TOKEN_FILE": str(tmp_path / "empty")})
    config = ServeConfig.from_env({"FTI_SERVE_MAX_BODY_BYTES": "2048", "FTI_PREDICTION_LOG_MAX_ROWS": "0"},
                                  max_in_flight=3)
    assert (config.max_body_bytes, config.retention.max_rows, config.max_in_flight) == (2048, 0, 3)
    assert "abc" not in repr(ServeConfig.from_env({"FTI_SERVE_TOKEN": "abc"}))
    # the service's switches read yes/no as every other setting does
    assert [ServeConfig.from_env({"FTI_SERVE_SHADOW": v}).shadow for v in ("on", "1", "off", "no", "")] == [
        True, True, False, False, ServeConfig().shadow]
    with pytest.raises(ValueError, match=r"FTI_SERVE_SHADOW='maybe' is not a yes/no value; set it to 1 or 0"):
        ServeConfig.from_env({"FTI_SERVE_SHADOW": "maybe"})
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "10.1.2.3", "::")] == [
        True, True, True, False, False, False]


def test_fti_serve_passes_its_limits_and_warns_beyond_loopback_without_a_token(home, monkeypatch, caplog):
    import uvicorn

    from fti.cli import main

    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append(self.config))
    interval = sys.getswitchinterval()  # serve() tunes the process: put it back
    try:
        with caplog.at_level(logging.WARNING, logger="fti.online"):
            code = main(["--home", str(home.home), "serve", "--host", "0.0.0.0", "--max-body-bytes", "4096",
                         "--log-max-rows", "7", "--max-connections", "50"])
    finally:
        sys.setswitchinterval(interval)
    assert code == 0
    assert any("without a token" in r.getMessage() for r in caplog.records)
    config = started[0]
    assert config.limit_concurrency == 50 and config.h11_max_incomplete_event_size == 16 * 1024
    serve_config = config.app.state.fti_guard.config
    assert (serve_config.max_body_bytes, serve_config.retention.max_rows) == (4096, 7)
