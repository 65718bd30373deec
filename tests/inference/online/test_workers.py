"""``fti serve --workers 2``: two service processes on one port, for real (the CLI in a process of its own).

Both workers answer; /metrics, whichever answers it, counts every worker's requests (also those of a
worker that was killed and replaced); every answer of every worker is in the one prediction log; a
promoted champion reaches every worker without a failed request; SIGTERM stops them all, flushed.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fti_testing import copy_home
from online_testing import MODEL, post_until_stopped, spine_requests, train_champion
from prometheus_client.parser import text_string_to_metric_families

from bench.loopback import free_port, wait_for_port
from models_ml.core.settings import PROJECT_ROOT
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.training.registry import publish_champion

pytestmark = pytest.mark.slow
WORKERS = 2
FLUSHED = 1.5  # a worker writes its counts to the shared metrics files every poll (1 s)


def _pid(url: str) -> int:
    with httpx.Client() as fresh:  # a new connection: the kernel picks a worker for it
        return fresh.get(f"{url}/health/details").json()["process"]["pid"]


def _pids(url: str, wanted: int, timeout: float = 90) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < wanted and time.monotonic() < deadline:
        try:
            seen.add(_pid(url))
        except httpx.TransportError:
            time.sleep(0.1)
    return seen


def _answered(url: str) -> float:
    """fti_online_requests{status="200"} of the model, as one scrape on a new connection reports it."""
    with httpx.Client() as fresh:
        text = fresh.get(f"{url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return sum(s.value for s in families["fti_online_requests"].samples
               if s.labels.get("status") == "200" and s.labels.get("model") == MODEL)


def _logged(home) -> set[str]:
    return set(read_prediction_log(home.prediction_log_path)["prediction_id"].to_pylist())


@pytest.fixture
def home(served_home, tmp_path):
    home = copy_home(served_home, tmp_path / "home")
    for old in home.online_dir.glob("prediction_log.sqlite*"):
        old.unlink()
    return home


@pytest.fixture
def service(home):
    port = free_port()
    env = {**os.environ, "FTI_HOME": str(home.home), "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "fti.cli", "serve", "--port", str(port), "--model", MODEL,
                                "--workers", str(WORKERS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=90)
        workers = _pids(url, WORKERS)
        assert len(workers) == WORKERS, f"workers answering: {workers}"
        yield process, url, workers
    finally:
        if process.poll() is None:  # SIGTERM, as a deployment stops it: the supervisor then stops its workers
            process.terminate()     # and removes its metrics folder (a SIGKILL left that folder in /tmp)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)


def test_workers_share_the_port_the_metrics_and_the_log(service, home):
    process, url, workers = service
    items = spine_requests(home, 30)
    ids = []
    for item in items:
        with httpx.Client() as fresh:  # new connections land on both workers
            response = fresh.post(f"{url}/predict/{MODEL}", json=item)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1
        ids.append(response.json()["prediction_id"])
    time.sleep(FLUSHED)
    # Every scrape counts every worker's answers, whichever worker gives it.
    scrapes = [_answered(url) for _ in range(6)]
    assert scrapes == [len(items)] * 6
    with httpx.Client() as fresh:
        families = {f.name: f for f in text_string_to_metric_families(fresh.get(f"{url}/metrics").text)}
    assert [s.value for s in families["fti_online_model_version"].samples] == [1.0]  # one series, not one per worker

    deadline = time.monotonic() + 30  # both workers' writers flush within 0.25 s
    while time.monotonic() < deadline and not set(ids) <= _logged(home):
        time.sleep(0.1)
    assert set(ids) <= _logged(home)
    time.sleep(FLUSHED)

    # A worker killed is replaced; what it counted still counts.
    victim = next(iter(workers))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 90
    alive: set[int] = set()
    while time.monotonic() < deadline and not (len(alive) == WORKERS and victim not in alive):
        alive = _pids(url, WORKERS, timeout=5) - {victim}
    assert len(alive) == WORKERS and victim not in alive, alive
    with httpx.Client() as fresh:
        response = fresh.post(f"{url}/predict/{MODEL}", json=items[0])
    assert response.status_code == 200
    ids.append(response.json()["prediction_id"])
    time.sleep(FLUSHED)
    assert _answered(url) == len(items) + 1

    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 0, output
    assert set(ids) <= _logged(home), output  # the last answer too: SIGTERM flushed the logs


def test_a_promoted_champion_reaches_every_worker_without_a_failed_request(service, home):
    _, url, _ = service
    items = spine_requests(home, 20)
    stop, statuses = threading.Event(), []
    versions_by_client: list[list[int]] = [[] for _ in range(6)]

    with concurrent.futures.ThreadPoolExecutor(len(versions_by_client)) as pool:
        # keep-alive: each client stays with one worker
        clients = [pool.submit(post_until_stopped, url, items, stop, statuses, versions)
                   for versions in versions_by_client]
        time.sleep(0.5)
        train_champion(home, seed=7)
        publish_champion(home, MODEL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(v and v[-1] == 2 for v in versions_by_client):
            time.sleep(0.05)
        stop.set()
        for c in clients:
            c.result()
    assert statuses and set(statuses) == {200}, f"failed requests during the swap: {set(statuses)}"
    for versions in versions_by_client:
        assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)
    time.sleep(FLUSHED)
    with httpx.Client() as fresh:
        families = {f.name: f for f in text_string_to_metric_families(fresh.get(f"{url}/metrics").text)}
    assert [s.value for s in families["fti_online_model_version"].samples] == [2.0]
    swaps = sum(s.value for s in families["fti_online_model_swaps"].samples)
    assert swaps == WORKERS  # each worker swapped once
