"""The benchmark's open-loop generator, against the real service, and the service's heap freeze.

The generator is the instrument behind the service's latency figures, so it is checked like code: every
scheduled request is either answered (with its status counted) or counted as an error, wrong statuses are
errors, and the schedule holds (requests leave at the rate asked for, each latency measured from its
scheduled time).
"""

from __future__ import annotations

import gc
import http.server
import json
import threading

import pytest
from fti_testing import copy_home
from online_testing import MODEL, ServerThread, spine_requests

from bench.open_loop import open_loop
from models_ml.inference.online.serving.app import create_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(served_home, tmp_path_factory):
    home = copy_home(served_home, tmp_path_factory.mktemp("open_loop") / "home")
    frozen_before = gc.get_freeze_count()
    with ServerThread(create_app(home, log_predictions=False, freeze_heap=True)) as running:
        running.frozen_before = frozen_before
        yield running
    gc.unfreeze()  # the app shares the test process: give the collector back its objects


@pytest.fixture(scope="module")
def bodies(served_home):
    return [json.dumps(item).encode() for item in spine_requests(served_home, 20)]


def test_every_request_is_answered_and_timed_from_its_schedule(server, bodies):
    result = open_loop(server.port, f"/predict/{MODEL}", bodies, rate=100, seconds=2, connections=4)

    assert result.sent == 200
    assert result.errors == 0
    assert result.statuses == {200: 200}
    assert len(result.latencies_ms) == 200 and len(result.send_late_ms) == 200
    assert min(result.latencies_ms) > 0
    assert all(late >= 0 for late in result.send_late_ms)


def test_unexpected_statuses_are_errors(server, bodies):
    result = open_loop(server.port, "/predict/no_such_model", bodies, rate=50, seconds=1, connections=2)

    assert result.statuses == {404: 50}
    assert result.errors == 50
    assert len(result.latencies_ms) == 50


def test_a_404_baseline_counts_no_errors_when_404_is_expected(server, bodies):
    result = open_loop(server.port, "/predict/no_such_model", bodies, rate=50, seconds=1, expect=404)

    assert (result.errors, result.statuses) == (0, {404: 50})


class _ClosingHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0: every answer closes its connection, as a server shedding keep-alive connections does."""

    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def test_connections_the_server_closes_are_replaced_and_every_request_counted_once():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ClosingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = open_loop(server.server_address[1], "/x", [b"{}"], rate=100, seconds=1, connections=4)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.sent, result.errors, result.statuses) == (100, 0, {200: 100})
    assert len(result.latencies_ms) == 100


def test_the_service_freezes_its_startup_heap(server):
    # Frozen objects are skipped by every collection: a full collection no longer walks the model and the
    # libraries while a request waits.
    assert gc.get_freeze_count() > server.frozen_before + 10_000
