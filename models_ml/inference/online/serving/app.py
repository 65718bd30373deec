"""The service's HTTP face: routes, handlers, the app and ``serve``.

The app only: :func:`models_ml.inference.online.serving.workers.serve` runs it (``fti serve``).

* ``POST /predict/{model}``: one request (a JSON object with the fields the model's published request
  schema lists: the label's entity keys, the feature view's join keys and request features; optionally
  the spine time, e.g. ``prediction_at``, as of which features are looked up, default now) ->
  ``{"model", "version", "score", "prediction_id", "as_of", "missing_groups", "freshness", "warnings"}``,
  where ``freshness`` gives, per feature group, the event time of the row used and its age in seconds at
  ``as_of`` (``null`` when the group had no row within its TTL: its features go to the model as missing,
  as in training) and ``warnings`` lists features from after ``as_of`` or a store older than a TTL (see
  :mod:`.scoring`);
* ``POST /predict/{model}/batch``: a JSON list of such objects (at most ``MAX_BATCH``) -> ``{"predictions": [...]}``;
* ``GET /health``: ``{"status": "ok" | "degraded" | "unavailable", "models": {name: "ok" | "degraded" |
  "unavailable"}, "prediction_log": ...}`` (503 when the store does not answer or no model is loaded;
  degraded: a newer champion failed to load, or the prediction log is not writing), nothing more: no paths,
  no exception text; ``GET /health/details``: versions, pointers, load errors, the store's freshness, the
  prediction log's counters; ``GET /metrics`` (Prometheus text: requests, errors, latency histogram, model
  version, feature age, store freshness, prediction log).

**Guards** (limits in :mod:`.config`; the server's own in :mod:`.server`): with a token configured, the
predict routes, ``/health/details`` and ``/metrics`` need ``Authorization: Bearer <token>`` (401; compared
in constant time). A predict request must say ``Content-Type: application/json`` (415), its body is at
most ``max_body_bytes`` (413, from ``Content-Length`` before reading, else while reading), at most
``max_in_flight`` are read or answered at once (503 with ``Retry-After``). An unknown model is a 404 that
names no served model, counted under the model label ``unknown``. A failure is a 500 carrying a request id
and no internals; the exception is logged with that id.

A request is validated (:mod:`.schema`), scored (:mod:`.scoring`), counted (:mod:`.metrics`, through
memoized series) and appended to the prediction log's queue (:mod:`models_ml.inference.online.prediction_log`),
which a background thread writes. With a challenger served (:mod:`.variants`, ``ServeConfig.canary_share`` or
``shadow``), a canary entity's item is scored by the challenger instead (its answer says ``"variant":
"canary"`` and the challenger's version), or, in shadow, the answered items are offered to the shadow queue
after the champion has scored them. Every answer names its ``variant``; every log row its variant and
version. For more throughput, ``fti serve --workers N`` runs N such processes on one port (:mod:`.workers`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models_ml.core.settings import Settings
from models_ml.inference.online.prediction_log import CANARY, CHAMPION, PredictionLog
from models_ml.inference.online.serving.config import ServeConfig
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.schema import RequestRejected, parse_batch, parse_one, validate
from models_ml.inference.online.serving.scoring import NewestEvents, Scored, ServedModel, prediction_records
from models_ml.inference.online.serving.state import ServiceState
from models_ml.inference.online.serving.variants import ShadowJob, ShadowScorer, in_canary
from models_ml.inference.online.store import UTC, OnlineStore, OnlineStoreError, open_online_store

LOGGER = logging.getLogger("fti.online")
UNKNOWN = "unknown"  # the model label of requests for a model that is not served


class _JSONResponse(JSONResponse):
    """Starlette's JSON response (compact, UTF-8), encoded by orjson: a few times faster than ``json``."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return _JSONResponse(payload, status_code=status, headers=headers)


def _internal_error(context: str, error: BaseException) -> JSONResponse:
    request_id = uuid.uuid4().hex
    LOGGER.error("%s (request id %s)", context, request_id, exc_info=error)
    return _json(500, {"detail": "internal error", "request_id": request_id}, {"x-request-id": request_id})


def _log(state: ServiceState, served: ServedModel, variant: str, items: Sequence[Mapping[str, Any]],
         scored: Scored, received_at: dt.datetime, latency_ms: float) -> None:
    if state.log is None:
        return
    for record in prediction_records(served, variant, items, scored, received_at, latency_ms):
        state.log.submit(record)


_Part = tuple[ServedModel, str, Sequence[Mapping[str, Any]], Scored]  # who scored which items, as what variant


def _score_variants(state: ServiceState, served: ServedModel, challenger: ServedModel | None, share: float,
                    items: Sequence[Mapping[str, Any]], received_at: dt.datetime,
                    newest: Mapping[str, dt.datetime]) -> tuple[list[dict[str, Any]], list[_Part]]:
    """The answers in request order, and the parts behind them: the champion's items, and with a canary
    the challenger's (the items whose entity falls in its share)."""
    entity = served.view.label.entity
    canary = [in_canary(share, entity, item) for item in items] if challenger is not None and share > 0 else ()
    if not any(canary):
        scored = served.score(state.store, items, received_at, state.metrics, newest, CHAMPION)
        return scored.responses, [(served, CHAMPION, items, scored)]
    responses: list[dict[str, Any]] = [{}] * len(items)
    parts: list[_Part] = []
    for model, variant, wanted in ((served, CHAMPION, False), (challenger, CANARY, True)):
        positions = [i for i, c in enumerate(canary) if c is wanted]
        if not positions:
            continue
        subset = [items[i] for i in positions]
        scored = model.score(state.store, subset, received_at, state.metrics, newest, variant)
        for j, i in enumerate(positions):
            responses[i] = scored.responses[j]
        parts.append((model, variant, subset, scored))
    return responses, parts


class _Guard:
    """The checks every guarded request passes, from the raw ASGI headers (one pass, no parsing)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.digest = hashlib.sha256(config.token.encode()).digest() if config.token else None

    @staticmethod
    def headers(request: Request) -> tuple[bytes | None, bytes | None, bytes | None]:
        content_type = content_length = authorization = None
        for name, value in request.scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"authorization":
                authorization = value
        return content_type, content_length, authorization

    def authorized(self, authorization: bytes | None) -> bool:
        if self.digest is None:
            return True
        scheme, _, credentials = (authorization or b"").partition(b" ")
        # Both sides hashed first: compare_digest then compares equal lengths, leaking not even the length.
        offered = hashlib.sha256(credentials.strip()).digest()
        return hmac.compare_digest(offered, self.digest) and scheme.lower() == b"bearer"


_UNAUTHORIZED = {"detail": "missing or wrong bearer token"}
_CHALLENGE = {"www-authenticate": 'Bearer realm="fti"'}


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` once it exceeds ``limit`` bytes (the rest is left unread)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


_GONE = Response(status_code=400)  # the answer to a client that left (or was cut off) mid-body: never sent


def _too_large(limit: int) -> JSONResponse:
    # The connection stays open: the rest of the body is read and dropped as it comes (a client that sends
    # it all before reading the answer gets the 413, not a reset), for at most the request timeout.
    return _json(413, {"detail": f"the request body is larger than {limit} bytes"})


async def _predict(request: Request, batch: bool) -> Response:
    state: ServiceState = request.app.state.fti
    guard: _Guard = request.app.state.fti_guard
    metrics = state.metrics
    started = time.perf_counter()
    received_at = dt.datetime.now(UTC)
    name = request.path_params["model"]
    endpoint = "batch" if batch else "single"
    served = state.models.get(name)  # this request keeps this model even if a swap happens meanwhile
    label = name if served is not None else UNKNOWN  # one series for every unknown name, not one per name
    content_type, content_length, authorization = guard.headers(request)
    if not guard.authorized(authorization):
        metrics.child(metrics.requests, label, endpoint, "401").inc()
        return _json(401, _UNAUTHORIZED, _CHALLENGE)
    if served is None:
        metrics.child(metrics.requests, UNKNOWN, endpoint, "404").inc()
        return _json(404, {"detail": "no such model is served"})
    if state.in_flight >= guard.config.max_in_flight:
        metrics.child(metrics.requests, name, endpoint, "503").inc()
        metrics.child(metrics.errors, name, "overloaded").inc()
        return _json(503, {"detail": "overloaded: retry later"}, {"retry-after": "1"})
    if not _is_json(content_type):
        metrics.child(metrics.requests, name, endpoint, "415").inc()
        return _json(415, {"detail": "the request body must be JSON (Content-Type: application/json)"})
    limit = guard.config.max_body_bytes
    if content_length is not None and (not content_length.isdigit() or int(content_length) > limit):
        metrics.child(metrics.requests, name, endpoint, "413").inc()
        return _too_large(limit)
    state.in_flight += 1
    try:
        try:
            body = await _read_body(request, limit)
        except ClientDisconnect:
            return _GONE
        if body is None:
            metrics.child(metrics.requests, name, endpoint, "413").inc()
            return _too_large(limit)
        try:
            parsed = parse_batch(body) if batch else [parse_one(body)]
            items = validate(served.request_type, served.field_names, parsed, batch)
        except RequestRejected as rejected:
            metrics.child(metrics.requests, name, endpoint, "422").inc()
            metrics.child(metrics.errors, name, "invalid_request").inc()
            return _json(422, rejected.body())
        del parsed
        challenger = state.challengers.get(name) if state.serve_challengers else None
        try:
            newest = request.app.state.fti_newest_events.of(state.freshness)
            responses, parts = _score_variants(state, served, challenger, guard.config.canary_share, items,
                                               received_at, newest)
        except OnlineStoreError as error:
            metrics.child(metrics.requests, name, endpoint, "503").inc()
            metrics.child(metrics.errors, name, "store").inc()
            request_id = uuid.uuid4().hex
            LOGGER.warning("the online store cannot answer (request id %s): %s", request_id, error)
            return _json(503, {"detail": "the online store is unavailable", "request_id": request_id},
                         {"x-request-id": request_id})
        except Exception as error:  # noqa: BLE001 - a store outage or a bug: answer 500, count it, log it
            metrics.child(metrics.requests, name, endpoint, "500").inc()
            metrics.child(metrics.errors, name, type(error).__name__).inc()
            return _internal_error("prediction failed", error)
        if state.shadow is not None and challenger is not None:
            state.shadow.offer(ShadowJob(challenger, items, [r["prediction_id"] for r in responses], received_at))
        elapsed = time.perf_counter() - started
        for model, variant, subset, scored in parts:
            _log(state, model, variant, subset, scored, received_at, elapsed * 1000)
            metrics.child(metrics.predictions, name, str(model.version)).inc(len(subset))
            metrics.child(metrics.variant_predictions, name, variant, str(model.version)).inc(len(subset))
            metrics.child(metrics.variant_latency, name, variant).observe(elapsed)
        metrics.child(metrics.requests, name, endpoint, "200").inc()
        metrics.child(metrics.latency, name, endpoint).observe(elapsed)
        return _json(200, {"predictions": responses} if batch else responses[0])
    finally:
        state.in_flight -= 1


async def predict_one(request: Request) -> Response:
    return await _predict(request, batch=False)


async def predict_batch(request: Request) -> Response:
    return await _predict(request, batch=True)


def _status(state: ServiceState) -> tuple[int, dict[str, Any]]:
    ready = state.store.is_ready()
    load_errors = dict(state.load_errors)  # a copy: the watcher thread changes it
    models = {name: ("degraded" if name in load_errors else "ok") for name in state.models}
    models.update({name: "unavailable" for name in load_errors if name not in state.models})
    log = "off" if state.log is None else ("ok" if state.log.healthy else "degraded")
    if not ready or not state.models:
        status = "unavailable"
    elif log == "degraded" or any(v != "ok" for v in models.values()):
        status = "degraded"
    else:
        status = "ok"
    return (503 if status == "unavailable" else 200), {"status": status, "models": models, "prediction_log": log,
                                                       "store_ready": ready}


async def health(request: Request) -> Response:
    code, body = _status(request.app.state.fti)
    body.pop("store_ready")
    return _json(code, body)


async def health_details(request: Request) -> Response:
    state: ServiceState = request.app.state.fti
    if not request.app.state.fti_guard.authorized(_Guard.headers(request)[2]):
        return _json(401, _UNAUTHORIZED, _CHALLENGE)
    code, summary = _status(state)
    models = {name: {"version": m.version, "feature_view": f"{m.view.name} v{m.view.version}",
                     "loaded_at": m.loaded_at.isoformat(), "pointer": str(m.pointer.path)}
              for name, m in state.models.items()}
    config = request.app.state.fti_guard.config
    challengers = {name: {"version": m.version, "feature_view": f"{m.view.name} v{m.view.version}",
                          "feature_groups": list(m.group_labels), "loaded_at": m.loaded_at.isoformat(),
                          "pointer": str(m.pointer.path)}
                   for name, m in state.challengers.items()}
    return _json(code, {
        "status": summary["status"],
        "store": {"kind": state.store.name, "ready": summary["store_ready"]},
        "models": models, "load_errors": dict(state.load_errors), "freshness": state.freshness,
        "prediction_log": state.log.stats() if state.log is not None else None,
        "in_flight": state.in_flight,
        "process": {"pid": os.getpid(), "workers": config.workers},
        "variants": {"canary_share": config.canary_share, "shadow": config.shadow, "challengers": challengers,
                     "challenger_errors": dict(state.challenger_errors),
                     "shadow_queue": state.shadow.stats() if state.shadow is not None else None},
    })


async def metrics_endpoint(request: Request) -> Response:
    state: ServiceState = request.app.state.fti
    if not request.app.state.fti_guard.authorized(_Guard.headers(request)[2]):
        return _json(401, _UNAUTHORIZED, _CHALLENGE)
    state.observe_gauges()
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def _unhandled(request: Request, error: Exception) -> Response:
    return _internal_error(f"{request.method} {request.url.path} failed", error)


class _App(Starlette):
    """Starlette, with its busiest two routes dispatched directly: ``POST /predict/<model>`` and
    ``/predict/<model>/batch`` go straight to their handler instead of through the middleware stack and the
    router (about a tenth of a request's own time). What Starlette would do for them is done here too: the
    app in the scope, the path parameter, and an unhandled error answered by :func:`_unhandled`, then
    raised, as Starlette's error middleware does. Any other request, method or path takes Starlette's way."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            parts = scope["path"].split("/")
            if (len(parts) == 3 or (len(parts) == 4 and parts[3] == "batch")) and parts[1] == "predict" \
                    and parts[0] == "" and parts[2]:
                scope["app"] = self
                scope["path_params"] = {"model": parts[2]}
                request = Request(scope, receive)
                try:
                    response = await _predict(request, batch=len(parts) == 4)
                except Exception as error:
                    await (await _unhandled(request, error))(scope, receive, send)
                    raise
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    store: OnlineStore | None = None,
    models: Sequence[str] | None = None,
    poll_seconds: float = 1.0,
    log_predictions: bool = True,
    freeze_heap: bool = False,
    config: ServeConfig | None = None,
    metrics_dir: str | None = None,
) -> Starlette:
    """The ASGI app. ``store`` defaults to the one the settings name (opened without creating anything);
    ``models`` limits the served models (default: every published champion); ``freeze_heap`` see
    :func:`.tuning.freeze_heap` (on when the app owns its process, as in :func:`.workers.serve`); ``config`` the
    limits and token (default: :class:`.config.ServeConfig`'s defaults, no token; ``serve`` reads the
    environment); ``metrics_dir`` the workers' shared metrics directory (:mod:`.workers`)."""
    config = config or ServeConfig()
    metrics = Metrics(metrics_dir)
    log = None
    if log_predictions:
        log = PredictionLog(settings.prediction_log_path, retention=config.retention)
    state = ServiceState(
        settings=settings,
        store=store if store is not None else open_online_store(settings, create=False),
        metrics=metrics,
        log=log,
        only=tuple(models) if models else None,
        poll_seconds=poll_seconds,
        freeze_heap=freeze_heap,
        serve_challengers=config.serves_challenger,
    )
    newest_events = NewestEvents()
    if config.shadow:
        state.shadow = ShadowScorer(settings, metrics, max_queue=config.shadow_queue,
                                    min_free_bytes=config.retention.min_free_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = _App(routes=[
        Route("/predict/{model}", predict_one, methods=["POST"]),
        Route("/predict/{model}/batch", predict_batch, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/details", health_details, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ], lifespan=lifespan, exception_handlers={Exception: _unhandled})
    app.state.fti = state
    app.state.fti_guard = _Guard(config)
    app.state.fti_newest_events = newest_events
    return app
