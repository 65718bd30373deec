"""How ``fti serve`` runs the app (:func:`serve`): one process, or several on one port (``--workers N``,
``FTI_SERVE_WORKERS``).

Why: one process answers on one core at most (the GIL), and on this project's 2-core machine its requests
queued past a p99 of 20 ms at 600 to 1,000 requests/s (``bench/online.py``). N processes use N cores.

**How.** The supervisor (the ``fti serve`` process itself) binds the address once to resolve the port (``0``:
a free one) and to fail at once when another program holds it, then spawns N workers (spawned, not forked:
no copy of a threaded parent). Each worker opens its own listening socket on the same address with
``SO_REUSEPORT`` and the kernel spreads new connections over them (by a hash of each connection's
addresses); a keep-alive connection stays with the worker that accepted it. Each worker is a whole service:
its own store connection, champion (and challenger), watcher thread (so each swaps a promoted champion in on
its own, within its poll interval, without dropping a request; every answer names the version that scored
it), prediction log writer (all append to the one prediction log file: SQLite in WAL mode, one batch
transaction per worker every 0.25 s), and with ``--shadow`` its own shadow process at the lowest CPU
priority. Limits (``--max-in-flight``, ``--max-connections``, ``--shadow-queue``) hold per worker.

**Metrics across workers.** The workers run prometheus_client's multiprocess mode (the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before spawning them): every worker writes its counters
and histograms to a memory-mapped file there, and ``/metrics``, whichever worker answers it, adds up all of
them (a worker that died and was restarted keeps its counts). Gauges say how they combine
(:class:`.metrics.Metrics`): versions and the store's ages the most recently set, backlogs and drop counts
summed over live workers, ``fti_online_prediction_log_up`` the minimum. Each worker's watcher refreshes its
gauges every poll, so a scrape is at most a poll interval behind any worker. ``/health`` and
``/health/details`` describe the worker that answered (``process``: its pid and the worker count).

A worker that dies is started again after a second; one that ends before it ever listened (a bad setting, a
model that cannot load) stops the service, exit code 1, rather than restarting in a loop. SIGINT or SIGTERM
stops every worker the way one process stops: the requests in hand are answered, the prediction logs and
shadow processes flushed. A worker ends when the supervisor dies, even by SIGKILL (Linux's parent-death
signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from models_ml.core.settings import Settings
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.serving.config import ServeConfig, is_loopback
from models_ml.inference.online.serving.server import uvicorn_config
from models_ml.inference.online.serving.tuning import tune_for_latency

LOGGER = logging.getLogger("fti.online")
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it
RESTART_DELAY_SECONDS = 1.0
STOP_SECONDS = 20.0  # how long workers get to finish their requests and flush before being killed
_PR_SET_PDEATHSIG = 1


def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
          models: Sequence[str] | None = None, log_level: str = "warning", config: ServeConfig | None = None) -> int:
    """Run the service with uvicorn (uvloop and httptools when installed, as ``uvicorn[standard]`` does)
    until interrupted; binds ``settings.serve_host``, loopback by default, with the limits of ``config``
    (default: the environment's, :meth:`.config.ServeConfig.from_env`). The process is tuned for tail
    latency (:mod:`.tuning`): the app owns it. With ``config.workers`` > 1, that many processes on the one
    port (:func:`serve_workers`). Returns the exit code."""
    import uvicorn

    config = config or ServeConfig.from_env()
    host = host or settings.serve_host
    if config.token is None and not is_loopback(host):
        LOGGER.warning("serving on %s without a token: anyone who can reach it can predict and read /metrics "
                       "(set FTI_SERVE_TOKEN or FTI_SERVE_TOKEN_FILE, or fti serve --token-file)", host)
    port = settings.serve_port if port is None else port
    if config.workers > 1:
        return serve_workers(settings, host=host, port=port, models=models, log_level=log_level, config=config)
    tune_for_latency()
    app = create_app(settings, models=models, freeze_heap=True, config=config)
    uvicorn.Server(uvicorn_config(app, host=host, port=port, config=config, log_level=log_level)).run()
    return 0


def bind_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (listening when ``listen``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        if listen:
            sock.listen(2048)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (the supervisor) dies (nothing elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_worker(settings: Settings, host: str, port: int, models: Sequence[str] | None, log_level: str,
               config: ServeConfig, metrics_dir: str, ready: Any) -> None:
    """One worker: the whole service on its own ``SO_REUSEPORT`` socket (the spawned process's target);
    sets ``ready`` once it listens."""
    _die_with_parent()
    logging.basicConfig(level=log_level.upper(), format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: "
                                                        f"%(message)s")
    import uvicorn

    tune_for_latency()
    app = create_app(settings, models=models, freeze_heap=True, config=config, metrics_dir=metrics_dir)
    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # the app's start-up (store, models) passed and the socket listens
                ready.set()

    sock = bind_socket(host, port, listen=True)
    Server(uvicorn_config(app, host=host, port=port, config=config, log_level=log_level)).run(sockets=[sock])


class _Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, models: Sequence[str] | None, log_level: str,
                 config: ServeConfig, metrics_dir: str) -> None:
        self.args = (settings, host, port, tuple(models) if models else None, log_level, config, metrics_dir)
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[tuple[Any, Any]] = []  # (process, its ready event)
        self.stopping = threading.Event()

    def start_worker(self) -> tuple[Any, Any]:
        ready = self.context.Event()
        process = self.context.Process(target=run_worker, args=(*self.args, ready), name="fti-serve-worker")
        process.start()
        return process, ready

    def run(self, count: int) -> int:
        self.workers = [self.start_worker() for _ in range(count)]
        while not self.stopping.wait(0.2):
            for i, (process, ready) in enumerate(self.workers):
                if process.is_alive():
                    continue
                self._forget(process)
                if not ready.is_set():
                    LOGGER.error("worker %d ended before it listened (exit code %s): stopping the service",
                                 process.pid, process.exitcode)
                    self.stop()
                    return 1
                LOGGER.error("worker %d exited (code %s): starting another", process.pid, process.exitcode)
                if self.stopping.wait(RESTART_DELAY_SECONDS):
                    break
                self.workers[i] = self.start_worker()
        self.stop()
        return 0

    def stop(self) -> None:
        for process, _ in self.workers:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process, _ in self.workers:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                LOGGER.error("worker %d did not stop within %.0f s: killing it", process.pid, STOP_SECONDS)
                process.kill()
                process.join(5)
            self._forget(process)
        self.workers = []

    def _forget(self, process: Any) -> None:
        from prometheus_client import multiprocess

        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # its live gauges no longer count


def serve_workers(settings: Settings, *, host: str, port: int, models: Sequence[str] | None, log_level: str,
                  config: ServeConfig) -> int:
    """Run ``config.workers`` service processes on ``host:port`` until SIGINT or SIGTERM (see the module
    docstring); the exit code (1: a worker could not start)."""
    reserved = bind_socket(host, port, listen=False)  # port 0 -> the one every worker binds
    port = reserved.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="fti-serve-metrics-")
    previous = os.environ.get(METRICS_DIR_VARIABLE)
    os.environ[METRICS_DIR_VARIABLE] = metrics_dir  # the spawned workers inherit it
    supervisor = _Supervisor(settings, host, port, models, log_level, config, metrics_dir)
    handlers = {sig: signal.signal(sig, lambda *_: supervisor.stopping.set()) for sig in (signal.SIGINT,
                                                                                          signal.SIGTERM)}
    LOGGER.info("serving on %s:%d with %d worker processes", host, port, config.workers)
    try:
        return supervisor.run(config.workers)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if previous is None:
            os.environ.pop(METRICS_DIR_VARIABLE, None)
        else:
            os.environ[METRICS_DIR_VARIABLE] = previous
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
