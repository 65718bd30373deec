"""The deployments in prefect.yaml, run the way a user runs them: a real Prefect server on loopback, the
`process` work pool, `prefect deploy`, a worker, and one feature-pipeline run through that worker.

Everything runs as subprocesses of the venv's `prefect` command, in a throwaway PREFECT_HOME and FTI_HOME;
every wait is bounded, and the teardown stops the worker (SIGTERM twice if need be), any flow-run
process it left, and the server. Their logs go to files under tmp_path; on failure the test prints
their tails, so a CI failure can be read without re-running it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest
import yaml

from bench.loopback import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).parent / "prefect"
POOL = "fti-local"
RUN_THROUGH = "2013-01-02"  # two days of flights: landing and `dbt build` take ~30 s

SERVER_START_TIMEOUT = 120
CLI_TIMEOUT = 120
RUN_TIMEOUT = 300
STOP_TIMEOUT = 15
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Processes:
    """The subprocesses this test started, each with its log file, and how to stop them."""

    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir = log_dir
        self.env = env
        self.logs: list[Path] = []
        self.services: dict[str, subprocess.Popen] = {}
        self.started = time.monotonic()

    def mark(self, what: str) -> None:
        """Print how long into the test a step finished (shown with -s, or with the logs on failure)."""
        print(f"{time.monotonic() - self.started:6.1f} s  {what}")

    def _log(self, name: str) -> Path:
        path = self.log_dir / f"{len(self.logs):02d}-{name}.log"
        self.logs.append(path)
        return path

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start a long-running `prefect` command (server, worker) in the background."""
        with self._log(name).open("w") as log:
            process = subprocess.Popen(
                [str(PREFECT), *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.services[name] = process
        return process

    def run(self, name: str, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        """Run a `prefect` command to completion from the repository root; fail with its output if it fails."""
        log = self._log(name)
        try:
            result = subprocess.run(
                [str(PREFECT), "--no-prompt", *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                stdin=subprocess.DEVNULL, timeout=timeout,
            )
        except subprocess.TimeoutExpired as timed_out:
            log.write_text(f"$ prefect {' '.join(args)}\nTIMED OUT after {timeout} s\n{timed_out.stdout or ''}")
            raise AssertionError(f"`prefect {' '.join(args)}` did not finish in {timeout} s") from None
        log.write_text(f"$ prefect {' '.join(args)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}")
        assert result.returncode == 0, f"`prefect {' '.join(args)}` failed:\n{_tail(log)}"
        return result.stdout

    def print_logs(self) -> None:
        for path in self.logs:
            print(f"\n===== {path.name} (last lines) =====\n{_tail(path)}")

    def stop_all(self) -> None:
        """Worker first (it may still be running a flow), then the server."""
        for name in sorted(self.services, key=lambda n: n == "server"):
            _stop(self.services[name])


def _descendants(pid: int) -> list[int]:
    """Processes started under `pid` (flow runs of a worker); they may sit in their own session."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, again, then SIGKILL, each after a bounded wait; then whatever it started and left behind.

    A worker turns SIGTERM into a SIGINT to itself, which does nothing when SIGINT was ignored where it was
    started (a background job of a script); the second SIGTERM then kills it."""
    if process.poll() is not None:
        return
    left_behind = _descendants(process.pid)
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        try:
            process.send_signal(sig)
            process.wait(timeout=STOP_TIMEOUT)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    for pid in left_behind:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _api(api_url: str, method: str, path: str, body: dict | None = None) -> dict | list:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{api_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def _wait_until_healthy(api_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the Prefect server exited with code {server.returncode}"
        try:
            if _api(api_url, "GET", "/health") is True:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"the Prefect server did not answer /api/health within {SERVER_START_TIMEOUT} s")


def _wait_for_terminal_state(api_url: str, flow_run_id: str, worker: subprocess.Popen) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT
    state = None
    while time.monotonic() < deadline:
        flow_run = _api(api_url, "GET", f"/flow_runs/{flow_run_id}")
        state = (flow_run.get("state") or {}).get("type")
        if state in TERMINAL_STATES:
            return state
        assert worker.poll() is None, f"the worker exited with code {worker.returncode}; run was {state}"
        time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} still {state} after {RUN_TIMEOUT} s")


def _deployments_to_register() -> tuple[list[str], list[str]]:
    """`flow/deployment` names from prefect.yaml whose entrypoint file exists, and the entrypoints missing.

    `prefect deploy --all` stops at the first entrypoint it cannot load, so a deployment whose flow is
    not written yet would keep the others from registering. (Prefect matches `flow/name` against the
    entrypoint's function name, with `-` read as `_`.)
    """
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    present, missing = [], []
    for deployment in config["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        if (ROOT / path).exists():
            present.append(f"{function.replace('_', '-')}/{deployment['name']}")
        else:
            missing.append(deployment["entrypoint"])
    return present, missing


def _warehouse_rows(warehouse: Path, table: str) -> int:
    """Rows in `table`, read-only; the flow-run process may take a moment to exit and free the file."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                return con.execute(f"select count(*) from {table}").fetchone()[0]
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_deployments_register_and_a_worker_runs_the_feature_pipeline(tmp_path):
    home = tmp_path / "fti-home"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_WORKER_QUERY_SECONDS="2",  # the default 10 s poll only slows the test down
        OMP_WAIT_POLICY="PASSIVE",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        FTI_HOME=str(home),
    )
    processes = Processes(tmp_path, env)
    to_register, missing = _deployments_to_register()
    if missing:
        print(f"not deployed, entrypoint missing: {missing}")
    try:
        # No scheduler (cron runs are not what this test is about, and one coming due would queue ahead of
        # ours on the pool of one), no UI (not needed; starts faster).
        server = processes.start(
            "server", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler", "--no-ui"
        )
        _wait_until_healthy(api_url, server)
        processes.mark("server healthy")

        processes.run("work-pool-create", "work-pool", "create", POOL, "--type", "process")
        processes.run("work-pool-limit", "work-pool", "set-concurrency-limit", POOL, "1")
        worker = processes.start("worker", "worker", "start", "--pool", POOL)  # starts while we deploy
        processes.mark("work pool created, worker starting")

        if missing:
            processes.run("deploy", "deploy", *[arg for name in to_register for arg in ("-n", name)])
        else:
            processes.run("deploy", "deploy", "--all")
        processes.mark(f"deployed {to_register}")

        for name in to_register:
            deployment = _api(api_url, "GET", f"/deployments/name/{name}")
            assert deployment["work_pool_name"] == POOL
            assert [s["schedule"]["cron"] for s in deployment["schedules"]], f"{name} has no cron schedule"
            (pull_step,) = deployment["pull_steps"]
            directory = pull_step["prefect.deployments.steps.set_working_directory"]["directory"]
            assert Path(directory).resolve() == ROOT  # the checkout, found when deploying
        features = _api(api_url, "GET", "/deployments/name/feature-pipeline/flights")
        assert features["parameters"] == {"domain": "flights", "full_refresh": False}
        assert features["schedules"][0]["schedule"]["cron"] == "0 6 * * *"

        output = processes.run(
            "deployment-run", "deployment", "run", "feature-pipeline/flights",
            "--param", f"through={RUN_THROUGH}", "--param", f"home={home}",
        )
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, f"no flow run id in:\n{output}"

        processes.mark("flow run created")
        state = _wait_for_terminal_state(api_url, match.group(1), worker)
        processes.mark(f"flow run {state}")

        assert state == "COMPLETED"
        assert _warehouse_rows(home / "warehouse.duckdb", "labels.label_flight__departure_delay") > 0
    except BaseException:
        processes.print_logs()
        raise
    finally:
        processes.stop_all()
