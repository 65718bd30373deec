"""The HTTP server's own limits: what uvicorn is configured with, and what its httptools protocol lacks.

uvicorn gives ``limit_concurrency`` (open connections plus running requests; a 503 beyond it) and
``timeout_keep_alive`` (an idle connection after a response). Its httptools protocol (the one
``uvicorn[standard]`` selects, for latency) has no limit on the request head, no timeout for reading a
request, and does not time out a connection that never sends a byte. :func:`guarded_protocol` adds them:

* the request line and headers larger than ``max_header_bytes``: 431, connection closed (with h11, when
  httptools is missing, ``h11_max_incomplete_event_size`` does the same);
* a request whose head and body have not all arrived ``timeout_request`` seconds after its first byte:
  408, connection closed (a slow client holds no connection for long);
* a new connection idle for ``timeout_keep_alive`` seconds: closed, as after a response.

Each check is a counter or a timer per request; the request path itself is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from models_ml.inference.online.serving.config import ServeConfig


def _plain(status: int, reason: str, message: str) -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


_HEAD_TOO_LARGE = _plain(431, "Request Header Fields Too Large", "Request header fields too large")
_TIMEOUT = _plain(408, "Request Timeout", "Request timeout")


def guarded_protocol(config: ServeConfig) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with the limits above (or ``"h11"`` when httptools is missing)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn without the [standard] extra
        return "h11"

    max_head = config.max_header_bytes
    timeout_request = config.timeout_request

    class _HeadTooLarge(Exception):
        pass

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True  # between a message's end (or the connection's start) and its headers' end
            self._head_size = 0  # the request line and headers parsed so far (exact)
            self._head_bytes = 0  # bytes received while in a head not yet complete (httptools buffers them)
            self._completed = False  # a message ended during the current feed
            self._head_too_large = False
            self._rejected = False
            self._read_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # uvicorn arms the keep-alive timeout only after a response: a silent new connection would stay.
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_read_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._rejected:
                return
            in_head, self._completed = self._in_head, False
            super().data_received(data)  # a head too large raises in a callback: send_400_response below
            if in_head and self._in_head and not self._completed and not self._rejected:
                # The whole chunk was (unfinished) head: httptools holds it until the header ends.
                self._head_bytes += len(data)
                if self._head_bytes > max_head:
                    self._reject(_HEAD_TOO_LARGE)

        def send_400_response(self, msg: str) -> None:
            if self._head_too_large:
                self._reject(_HEAD_TOO_LARGE)
            else:
                super().send_400_response(msg)

        def _grow_head(self, size: int) -> None:
            self._head_size += size
            if self._head_size > max_head:  # before the app sees the request: raising stops the parser
                self._head_too_large = True
                raise _HeadTooLarge

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_size = 0
            self._cancel_read_timer()
            self._read_timer = self.loop.call_later(timeout_request, self._read_timed_out)

        def on_url(self, url: bytes) -> None:
            self._grow_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._grow_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._cancel_read_timer()
            self._in_head, self._completed = True, True
            self._head_bytes = 0
            super().on_message_complete()

        def _cancel_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            cycle = self.cycle
            if cycle is not None and cycle.response_complete:  # answered before its body came (e.g. a 413)
                self._rejected = True
                self.transport.close()
            elif cycle is not None and cycle.response_started:
                cycle.keep_alive = False  # the app is answering: close after it
            else:
                self._reject(_TIMEOUT)

        def _reject(self, response: bytes) -> None:
            self._rejected = True
            self._cancel_read_timer()
            if self.cycle is not None:
                self.cycle.disconnected = True  # an app still reading sees a disconnect
                self.cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return GuardedHttpToolsProtocol


def uvicorn_config(app: Any, *, host: str, port: int, config: ServeConfig, log_level: str = "warning",
                   **extra: Any):
    """The uvicorn configuration ``serve`` (and the tests) run the app with."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
        http=guarded_protocol(config),
        limit_concurrency=config.max_connections or None,
        timeout_keep_alive=config.timeout_keep_alive,
        h11_max_incomplete_event_size=config.max_header_bytes,
        **extra,
    )
