"""The service's limits and its token: what bounds the work one client can cause, and who may call it.

Read from the environment (:meth:`ServeConfig.from_env`), each overridable by an ``fti serve`` flag:

================================  =====================  ==========================================================
setting (environment variable)    default                what it bounds
================================  =====================  ==========================================================
``FTI_SERVE_TOKEN``               unset (no auth)        when set, ``Authorization: Bearer <token>`` is required on
                                                         ``/predict/...``, ``/health/details`` and ``/metrics``
``FTI_SERVE_TOKEN_FILE``          unset                  the token read from this file (first line) instead
``FTI_SERVE_MAX_BODY_BYTES``      1 MiB                  a request body (413 beyond; checked against
                                                         ``Content-Length`` before reading, and while reading)
``FTI_SERVE_MAX_HEADER_BYTES``    16 KiB                 the request line and headers (431 beyond)
``FTI_SERVE_MAX_CONNECTIONS``     1000                   open connections plus queued requests: uvicorn's
                                                         ``limit_concurrency`` (503 beyond)
``FTI_SERVE_MAX_IN_FLIGHT``       64                     prediction requests being read or answered at once
                                                         (503 with ``Retry-After`` beyond): with the body limit,
                                                         bounds the memory held by request bodies
``FTI_SERVE_TIMEOUT_KEEP_ALIVE``  30 s                   an idle connection, also before its first request
``FTI_SERVE_TIMEOUT_REQUEST``     10 s                   reading one request, headers and body (408 beyond)
``FTI_PREDICTION_LOG_MAX_AGE_DAYS``  30                  prediction-log rows older than this are deleted
``FTI_PREDICTION_LOG_MAX_ROWS``   5,000,000              the oldest rows beyond this many are deleted
``FTI_PREDICTION_LOG_MAX_BYTES``  2 GiB                  the log's live pages; the oldest rows go beyond it
``FTI_PREDICTION_LOG_MIN_FREE_BYTES``  256 MiB           free disk under the log below which it stops writing
                                                         (records dropped and counted; ``/health`` degraded)
``FTI_PREDICTION_LOG_PRUNE_SECONDS``  60                 how often retention runs (in the log's writer thread)
``FTI_SERVE_CANARY_SHARE``        0 (off)                the share of entities (0 to 1) the challenger answers
                                                         (``fti serve --canary``; see :mod:`.variants`)
``FTI_SERVE_SHADOW``              0 (off)                1: the challenger scores every request off the request
                                                         path (``fti serve --shadow``)
``FTI_SERVE_SHADOW_QUEUE``        1000                   shadow jobs waiting at most; beyond, dropped and counted
``FTI_SERVE_WORKERS``             1                      service processes on the one port (``fti serve
                                                         --workers``; see :mod:`.workers`); every limit above
                                                         that counts requests, connections or jobs is per worker
================================  =====================  ==========================================================

A value of 0 for a retention limit turns it off. Canary and shadow are exclusive: one way of serving the
challenger at a time, so that ``fti models compare`` knows which test applies. Either needs a published
challenger pointer (``fti models promote NAME N --alias challenger``); without one the champion serves alone.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from models_ml.core.settings import yes_no
from models_ml.inference.online.prediction_log import LogRetention

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """See the module docstring."""

    token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1 * MIB
    max_header_bytes: int = 16 * 1024
    max_connections: int = 1000
    max_in_flight: int = 64
    timeout_keep_alive: float = 30.0
    timeout_request: float = 10.0
    retention: LogRetention = LogRetention()
    canary_share: float = 0.0
    shadow: bool = False
    shadow_queue: int = 1000
    workers: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_share <= 1.0:
            raise ValueError(f"canary share {self.canary_share!r} must be between 0 and 1 (e.g. 0.1 for a tenth "
                             f"of the entities)")
        if self.canary_share > 0 and self.shadow:
            raise ValueError("canary and shadow cannot both be on: serve the challenger one way at a time "
                             "(drop --shadow or --canary)")
        if self.workers < 1:
            raise ValueError(f"workers {self.workers!r} must be at least 1")
        if self.shadow and self.shadow_queue < 1:
            raise ValueError(f"shadow queue {self.shadow_queue!r} must be at least 1")

    @property
    def serves_challenger(self) -> bool:
        return self.shadow or self.canary_share > 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> ServeConfig:
        """The settings the environment gives, then ``overrides`` (``None`` values ignored; retention fields
        by their :class:`LogRetention` names)."""
        env = os.environ if env is None else env
        d = cls()
        r = d.retention

        def num(name: str, default, kind=int):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value < 0:
                raise ValueError(f"{name}={raw!r} must not be negative")
            return value

        values = {
            "token": token_from_env(env),
            "max_body_bytes": num("FTI_SERVE_MAX_BODY_BYTES", d.max_body_bytes),
            "max_header_bytes": num("FTI_SERVE_MAX_HEADER_BYTES", d.max_header_bytes),
            "max_connections": num("FTI_SERVE_MAX_CONNECTIONS", d.max_connections),
            "max_in_flight": num("FTI_SERVE_MAX_IN_FLIGHT", d.max_in_flight),
            "timeout_keep_alive": num("FTI_SERVE_TIMEOUT_KEEP_ALIVE", d.timeout_keep_alive, float),
            "timeout_request": num("FTI_SERVE_TIMEOUT_REQUEST", d.timeout_request, float),
            "canary_share": num("FTI_SERVE_CANARY_SHARE", d.canary_share, float),
            "shadow": yes_no(env, "FTI_SERVE_SHADOW", d.shadow),
            "shadow_queue": num("FTI_SERVE_SHADOW_QUEUE", d.shadow_queue),
            "workers": num("FTI_SERVE_WORKERS", d.workers),
        }
        retention = {
            "max_age_days": num("FTI_PREDICTION_LOG_MAX_AGE_DAYS", r.max_age_days, float),
            "max_rows": num("FTI_PREDICTION_LOG_MAX_ROWS", r.max_rows),
            "max_bytes": num("FTI_PREDICTION_LOG_MAX_BYTES", r.max_bytes),
            "min_free_bytes": num("FTI_PREDICTION_LOG_MIN_FREE_BYTES", r.min_free_bytes),
            "prune_seconds": num("FTI_PREDICTION_LOG_PRUNE_SECONDS", r.prune_seconds, float),
        }
        for key, value in overrides.items():
            if value is None:
                continue
            if key in retention:
                retention[key] = value
            elif key in values:
                values[key] = value
            else:
                raise TypeError(f"unknown serve setting {key!r}")
        return cls(**values, retention=LogRetention(**retention))

    def replace(self, **changes) -> ServeConfig:
        return dataclasses.replace(self, **changes)


def token_from_env(env: Mapping[str, str]) -> str | None:
    """``FTI_SERVE_TOKEN``, else the first line of ``FTI_SERVE_TOKEN_FILE``; ``None`` when neither is set."""
    token = env.get("FTI_SERVE_TOKEN") or None
    path = env.get("FTI_SERVE_TOKEN_FILE")
    if token is None and path:
        token = read_token_file(Path(path))
    return token


def read_token_file(path: Path) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ValueError(f"cannot read the serve token file {path}: {error.strerror}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"the serve token file {path} is empty")
    return token


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
