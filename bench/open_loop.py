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

    def take_response(self) -> int | None:
        """The status of the complete response at the head of the buffer (removed), or None if incomplete."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buffer[:end].split(b"\r\n")
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length:]
        return int(lines[0].split(b" ", 2)[1])


def open_loop(port: int, path: str, bodies: list[bytes], rate: float, seconds: float, *, expect: int = 200,
              connections: int = 32, timeout: float = 5.0) -> LoadResult:
    """POST ``bodies`` (round robin) to ``path`` at ``rate`` requests/s for ``seconds``.

    A request gets an error when its connection fails, its status is not ``expect``, or it finds no idle
    connection for ``timeout`` seconds or no answer within ``timeout`` seconds after the last send."""
    requests = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    total = int(rate * seconds)
    selector = selectors.EpollSelector()
    idle: collections.deque[_Connection] = collections.deque()
    ready = threading.Condition()
    latencies: list[float] = []
    late: list[float] = []
    statuses: collections.Counter = collections.Counter()
    answered = 0
    errors = 0
    sending_done = threading.Event()

    def add_connection() -> None:
        connection = _Connection(port)
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        with ready:
            idle.append(connection)
            ready.notify()

    def fail(connection: _Connection, reason: str) -> None:
        """Replace a broken connection; its request in flight, if any, is an error."""
        nonlocal answered, errors
        if connection.scheduled is not None:
            statuses[reason] += 1
            errors += 1
            answered += 1
        selector.unregister(connection.sock)
        connection.sock.close()
        add_connection()

    def receive() -> None:
        nonlocal answered, errors
        deadline = None
        while answered < total:
            if sending_done.is_set() and deadline is None:
                deadline = time.perf_counter() + timeout
            if deadline is not None and time.perf_counter() > deadline:
                break
            for key, _ in selector.select(0.2):
                connection: _Connection = key.data
                try:
                    data = connection.sock.recv(65536)
                except OSError as error:
                    fail(connection, type(error).__name__)
                    continue
                arrived = time.perf_counter()
                if not data:
                    fail(connection, "connection closed")
                    continue
                connection.buffer += data
                status = connection.take_response()
                if status is None or connection.scheduled is None:
                    continue
                latencies.append((arrived - connection.scheduled) * 1000)
                statuses[status] += 1
                errors += status != expect
                answered += 1
                connection.scheduled = None
                with ready:
                    idle.append(connection)
                    ready.notify()

    for _ in range(connections):
        add_connection()
    receiver = threading.Thread(target=receive, name="open-loop-receiver", daemon=True)
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
            with ready:
                if not idle and not ready.wait_for(lambda: idle, timeout):
                    statuses["no idle connection"] += 1
                    errors += 1
                    answered += 1
                    continue
                connection = idle.popleft()
            connection.scheduled = scheduled
            late.append((time.perf_counter() - scheduled) * 1000)
            try:
                connection.sock.sendall(requests[i % len(requests)])
            except OSError as error:
                fail(connection, type(error).__name__)
        sending_done.set()
        receiver.join(timeout + 5)
    finally:
        sys.setswitchinterval(switch_interval)
        if gc_was_enabled:
            gc.enable()
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
    lost = total - len(latencies) - sum(n for s, n in statuses.items() if not isinstance(s, int))
    if lost > 0:
        statuses["no answer"] += lost
        errors += lost
    return LoadResult(rate, seconds, total, latencies, late, errors, dict(statuses))
