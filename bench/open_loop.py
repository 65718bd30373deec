"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server does.

Each latency is measured from the request's *scheduled* send time, so a slow answer delays nothing else
and queueing (in the server or here) is counted, not hidden (no coordinated omission).

Why threads and not asyncio: an asyncio loop wakes its timers through ``epoll_wait``, whose timeout has
millisecond resolution, so every request left 0 to 1 ms late and the measured latency of a 0.6 ms answer
doubled. Here a sender thread sleeps with ``time.sleep`` (``clock_nanosleep``: tens of microseconds late)
and writes the request on an idle keep-alive connection; a receiver thread waits on ``epoll`` and stamps
each response as it arrives. How late the sender was is reported too (``send_late_ms``) as the
instrument's own error, which the latencies include. The cyclic garbage collector is off during a run
(a collection in the generator would be charged to the server) and the GIL switch interval is short, so
the two threads hand over quickly.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import selectors
import socket
import sys
import threading
import time


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@dataclasses.dataclass
class LoadResult:
    rate: float
    seconds: float
    sent: int
    latencies_ms: list[float]
    send_late_ms: list[float]
    errors: int
    statuses: dict

    def row(self, label: str) -> str:
        lat = self.latencies_ms
        return (f"| {label} | {self.rate:,.0f} | {self.sent:,} | {pct(lat, 50):.2f} | {pct(lat, 95):.2f} | "
                f"{pct(lat, 99):.2f} | {max(lat, default=float('nan')):.2f} | {self.errors} | "
                f"{pct(self.send_late_ms, 99):.2f} |")


HEADER = ("| run | requests/s | requests | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | errors "
          "| generator late p99 (ms) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")


class _Connection:
    """One keep-alive connection: at most one request in flight (no pipelining), its scheduled time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.scheduled: float | None = None
        self.closed = False
        self.keep_alive = True

    def take_response(self) -> int | None:
        """The status of the complete response at the head of the buffer (removed), or None if incomplete.
        Sets ``keep_alive``: False when the server will close the connection after this response (HTTP/1.0
        without keep-alive, or `Connection: close`), so no request is sent on it again."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buffer[:end].split(b"\r\n")
        length, connection_header = 0, b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection":
                connection_header = value.strip().lower()
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length:]
        version, status = lines[0].split(b" ", 2)[:2]
        self.keep_alive = (connection_header != b"close" if version == b"HTTP/1.1"
                           else connection_header == b"keep-alive")
        return int(status)


class _Run:
    """One run's shared state. The receiver thread owns the selector and the connections' buffers; the
    counters and the idle queue are shared, under ``lock``; the sender only takes idle connections, sends,
    and on a failed send shuts the socket down, which the receiver then sees and handles."""

    def __init__(self, port: int, total: int, expect: int, timeout: float) -> None:
        self.port, self.total, self.expect, self.timeout = port, total, expect, timeout
        self.selector = selectors.EpollSelector()
        self.lock = threading.Condition()
        self.idle: collections.deque[_Connection] = collections.deque()
        self.latencies: list[float] = []
        self.late: list[float] = []
        self.statuses: collections.Counter = collections.Counter()
        self.errors = 0
        self.settled = 0  # requests answered or failed
        self.sending_done = threading.Event()
        self.aborted: BaseException | None = None

    def add_connection(self) -> None:
        connection = _Connection(self.port)
        self.selector.register(connection.sock, selectors.EVENT_READ, connection)
        with self.lock:
            self.idle.append(connection)
            self.lock.notify()

    def count(self, status: int | str, latency_ms: float | None = None) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.errors += status != self.expect
            self.settled += 1
            if latency_ms is not None:
                self.latencies.append(latency_ms)

    def fail(self, connection: _Connection, reason: str) -> None:
        """(Receiver only.) Replace a broken connection once; its request in flight, if any, is an error."""
        if connection.closed:
            return
        connection.closed = True
        if connection.scheduled is not None:
            connection.scheduled = None
            self.count(reason)
        with self.lock:
            if connection in self.idle:
                self.idle.remove(connection)
        self.selector.unregister(connection.sock)
        connection.sock.close()
        self.add_connection()

    def receive(self) -> None:
        try:
            self._receive()
        except BaseException as error:  # noqa: BLE001 - stop the sender instead of hanging it
            with self.lock:
                self.aborted = error
                self.lock.notify_all()

    def _receive(self) -> None:
        deadline = None
        while self.settled < self.total:
            if self.sending_done.is_set() and deadline is None:
                deadline = time.perf_counter() + self.timeout
            if deadline is not None and time.perf_counter() > deadline:
                return
            for key, _ in self.selector.select(0.2):
                connection: _Connection = key.data
                try:
                    data = connection.sock.recv(65536)
                except OSError as error:
                    self.fail(connection, type(error).__name__)
                    continue
                arrived = time.perf_counter()
                if not data:
                    self.fail(connection, "connection closed")
                    continue
                connection.buffer += data
                status = connection.take_response()
                if status is None or connection.scheduled is None:
                    continue
                scheduled, connection.scheduled = connection.scheduled, None
                self.count(status, (arrived - scheduled) * 1000)
                if not connection.keep_alive:  # the server closes it: replace it now, not after a send
                    self.fail(connection, "connection closed")
                    continue
                with self.lock:
                    self.idle.append(connection)
                    self.lock.notify()

    def take_idle(self) -> _Connection | None:
        """(Sender.) An idle, open connection; None after ``timeout`` seconds without one or an abort."""
        with self.lock:
            while True:
                if self.aborted is not None:
                    return None
                while self.idle:
                    connection = self.idle.popleft()
                    if not connection.closed:
                        return connection
                if not self.lock.wait(self.timeout):
                    return None

    def send(self, connection: _Connection, scheduled: float, request: bytes) -> None:
        """(Sender.) A failed send shuts the socket down: the receiver sees it and counts the error."""
        connection.scheduled = scheduled
        with self.lock:
            self.late.append((time.perf_counter() - scheduled) * 1000)
        try:
            connection.sock.sendall(request)
        except OSError:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)


def open_loop(port: int, path: str, bodies: list[bytes], rate: float, seconds: float, *, expect: int = 200,
              connections: int = 32, timeout: float = 5.0) -> LoadResult:
    """POST ``bodies`` (round robin) to ``path`` at ``rate`` requests/s for ``seconds``.

    A request gets an error when its connection fails, its status is not ``expect``, or it finds no idle
    connection for ``timeout`` seconds or no answer within ``timeout`` seconds after the last send. A
    failure of the generator itself is raised, not counted."""
    requests = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    total = int(rate * seconds)
    run = _Run(port, total, expect, timeout)
    for _ in range(connections):
        run.add_connection()
    receiver = threading.Thread(target=run.receive, name="open-loop-receiver", daemon=True)
    switch_interval = sys.getswitchinterval()
    gc_was_enabled = gc.isenabled()
    sys.setswitchinterval(1e-4)
    gc.disable()
    try:
        receiver.start()
        start = time.perf_counter() + 0.05
        for i in range(total):
            scheduled = start + i / rate
            wait = scheduled - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            connection = run.take_idle()
            if run.aborted is not None:
                break
            if connection is None:
                run.count("no idle connection")
                continue
            run.send(connection, scheduled, requests[i % len(requests)])
        run.sending_done.set()
        receiver.join(timeout + 5)
    finally:
        sys.setswitchinterval(switch_interval)
        if gc_was_enabled:
            gc.enable()
        for key in list(run.selector.get_map().values()):
            key.fileobj.close()
        run.selector.close()
    if run.aborted is not None:
        raise RuntimeError(f"the load generator failed: {run.aborted!r}") from run.aborted
    lost = total - run.settled
    if lost > 0:
        run.statuses["no answer"] += lost
        run.errors += lost
    return LoadResult(rate, seconds, total, run.latencies, run.late, run.errors, dict(run.statuses))
