"""The service's HTTP face: routes, handlers, the app and ``serve``.

* ``POST /predict/{model}``: one request (a JSON object with the fields the model's published request
  schema lists: the label's entity keys, the feature view's join keys and request features; optionally
  the spine time, e.g. ``prediction_at``, as of which features are looked up, default now) ->
  ``{"model", "version", "score", "prediction_id", "as_of", "missing_groups", "freshness"}``, where
  ``freshness`` gives, per feature group, the event time of the row used and its age in seconds at
  ``as_of`` (``null`` when the group had no row within its TTL: its features go to the model as missing,
  as in training);
* ``POST /predict/{model}/batch``: a JSON list of such objects (at most ``MAX_BATCH``) -> ``{"predictions": [...]}``;
* ``GET /health`` (200 when the store answers and a model is loaded, else 503), ``GET /metrics``
  (Prometheus text: requests, errors, latency histogram, model version, feature age, store freshness).

A request is validated (:mod:`.schema`), scored (:mod:`.scoring`), counted (:mod:`.metrics`, through
memoized series) and appended to the prediction log's queue (:mod:`models_ml.inference.online.prediction_log`),
which a background thread writes. For more throughput run several processes (Redis store) behind a
balancer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pydantic
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models_ml.core.settings import Settings
from models_ml.inference.online.prediction_log import PredictionLog
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.schema import validation_errors
from models_ml.inference.online.serving.scoring import Scored, ServedModel
from models_ml.inference.online.serving.state import ServiceState
from models_ml.inference.online.serving.tuning import tune_for_latency
from models_ml.inference.online.store import UTC, OnlineStore, OnlineStoreError, open_online_store

LOGGER = logging.getLogger("fti.online")


def _json(status: int, payload: Any) -> JSONResponse:
    return JSONResponse(payload, status_code=status)


def _log(state: ServiceState, served: ServedModel, items: Sequence[Mapping[str, Any]], scored: Scored,
         received_at: dt.datetime, latency_ms: float) -> None:
    if state.log is None:
        return
    entity = served.view.label.entity
    for item, result, row in zip(items, scored.responses, scored.rows):
        ages = {label: (f["age_seconds"] if f else None) for label, f in result["freshness"].items()}
        state.log.submit((
            result["prediction_id"], received_at, served.name, served.version,
            dt.datetime.fromisoformat(result["as_of"]), {k: item.get(k) for k in entity}, result["score"],
            result["missing_groups"], ages, row, dict(item), latency_ms,
        ))


async def _predict(request: Request, batch: bool) -> Response:
    state: ServiceState = request.app.state.fti
    metrics = state.metrics
    started = time.perf_counter()
    received_at = dt.datetime.now(UTC)
    name = request.path_params["model"]
    endpoint = "batch" if batch else "single"
    served = state.models.get(name)  # this request keeps this model even if a swap happens meanwhile
    if served is None:
        metrics.requests.labels(name, endpoint, "404").inc()
        return _json(404, {"detail": f"no model {name!r} is served (serving: {sorted(state.models) or 'none'})"})
    body = await request.body()
    try:
        if batch:
            items = [m.model_dump() for m in served.batch_type.validate_json(body)]
        else:
            items = [served.request_type.model_validate_json(body).model_dump()]
    except pydantic.ValidationError as error:
        metrics.requests.labels(name, endpoint, "422").inc()
        metrics.errors.labels(name, "invalid_request").inc()
        return _json(422, {"detail": validation_errors(error)})
    try:
        scored = served.score(state.store, items, received_at, metrics)
    except OnlineStoreError as error:
        metrics.requests.labels(name, endpoint, "503").inc()
        metrics.errors.labels(name, "store").inc()
        return _json(503, {"detail": str(error)})
    except Exception as error:  # noqa: BLE001 - a store outage or a bug: answer 500, count it, log it
        LOGGER.exception("prediction failed")
        metrics.requests.labels(name, endpoint, "500").inc()
        metrics.errors.labels(name, type(error).__name__).inc()
        return _json(500, {"detail": f"{type(error).__name__}: {error}"})
    elapsed = time.perf_counter() - started
    _log(state, served, items, scored, received_at, elapsed * 1000)
    metrics.child(metrics.requests, name, endpoint, "200").inc()
    metrics.child(metrics.predictions, name, str(served.version)).inc(len(scored.responses))
    metrics.child(metrics.latency, name, endpoint).observe(elapsed)
    return _json(200, {"predictions": scored.responses} if batch else scored.responses[0])


async def predict_one(request: Request) -> Response:
    return await _predict(request, batch=False)


async def predict_batch(request: Request) -> Response:
    return await _predict(request, batch=True)


async def health(request: Request) -> Response:
    state: ServiceState = request.app.state.fti
    ready = state.store.is_ready()
    models = {name: {"version": m.version, "feature_view": f"{m.view.name} v{m.view.version}",
                     "loaded_at": m.loaded_at.isoformat(), "pointer": str(m.pointer.path)}
              for name, m in state.models.items()}
    healthy = ready and bool(models)
    return _json(200 if healthy else 503, {
        "status": "ok" if healthy else "unavailable",
        "store": {"kind": state.store.name, "ready": ready},
        "models": models, "load_errors": state.load_errors, "freshness": state.freshness,
    })


async def metrics_endpoint(request: Request) -> Response:
    state: ServiceState = request.app.state.fti
    if state.log is not None:
        state.metrics.log_dropped.set(state.log.dropped)
        state.metrics.log_pending.set(state.log.pending)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings,
    *,
    store: OnlineStore | None = None,
    models: Sequence[str] | None = None,
    poll_seconds: float = 1.0,
    log_predictions: bool = True,
    freeze_heap: bool = False,
) -> Starlette:
    """The ASGI app. ``store`` defaults to the one the settings name (opened without creating anything);
    ``models`` limits the served models (default: every published champion); ``freeze_heap`` see
    :func:`.tuning.freeze_heap` (on when the app owns its process, as in :func:`serve`)."""
    state = ServiceState(
        settings=settings,
        store=store if store is not None else open_online_store(settings, create=False),
        metrics=Metrics(),
        log=PredictionLog(settings.prediction_log_path) if log_predictions else None,
        only=tuple(models) if models else None,
        poll_seconds=poll_seconds,
        freeze_heap=freeze_heap,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = Starlette(routes=[
        Route("/predict/{model}", predict_one, methods=["POST"]),
        Route("/predict/{model}/batch", predict_batch, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.fti = state
    return app


def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
          models: Sequence[str] | None = None, log_level: str = "warning") -> None:
    """Run the service with uvicorn (uvloop and httptools when installed, as ``uvicorn[standard]`` does)
    until interrupted; binds ``settings.serve_host``, loopback by default. The process is tuned for tail
    latency (:mod:`.tuning`): the app owns it."""
    import uvicorn

    tune_for_latency()
    app = create_app(settings, models=models, freeze_heap=True)
    uvicorn.run(app, host=host or settings.serve_host, port=port or settings.serve_port, log_level=log_level,
                access_log=False, timeout_keep_alive=30)
