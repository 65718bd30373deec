"""The online inference service: an ASGI app (Starlette) served by uvicorn.

Endpoints:

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

**What it reads**: only the online store and the files published under ``FTI_HOME/models`` (the
champion pointer ``champion.json`` and the model directory it names, see
:mod:`models_ml.inference.online.publish`). It never opens the warehouse nor parses the dbt project.

**Validation**: the body is parsed and validated by a pydantic model built from the published request
schema (types from the label table; unknown fields refused; strings non-empty; numbers finite; times with a
time zone). A bad field gets a 422 whose ``detail`` names it (``loc: ["body", "distance_miles"]``); nothing
reaches the store or the model before validation passes.

**Champion swaps**: a watcher thread polls each pointer's modification time (every ``poll_seconds``);
on a change it loads the new pointer and model in that thread and then replaces one reference. A request
holds the model object it started with, so no request fails or mixes versions during a swap.

**Request path**: validation, one store lookup (one SQLite read transaction or one Redis round trip), the
on-demand features (``models_ml.definitions.online_on_demand.compute_online`` when the project defines it), the model
(:mod:`models_ml.inference.online.encode`), a metric update and a queue append for the prediction log
(:mod:`models_ml.inference.online.prediction_log`). It runs on the event loop without a thread hop: the work is
about a millisecond of CPU, which a thread pool could not parallelize under the GIL and would only delay.
For more throughput run several processes (Redis store) behind a balancer.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models_ml.core.settings import Settings, load_settings
from models_ml.definitions.catalog import FeatureView
from models_ml.inference.online import encode
from models_ml.inference.online.prediction_log import PredictionLog
from models_ml.training.champion_pointer import (
    POINTER_FILE,
    Pointer,
    RequestField,
    published_models,
    read_pointer_file,
)
from models_ml.inference.online.store import (
    OnlineStore,
    OnlineStoreError,
    group_id,
    open_store,
)
from models_ml.training.train import Model, load_model

LOGGER = logging.getLogger("fti.online")
UTC = dt.timezone.utc
MAX_BATCH = 1000

# --------------------------------------------------------------------------------------------------
# Request validation, built from the published request schema

_StrictStr = Annotated[str, pydantic.StringConstraints(strict=True, min_length=1, max_length=512)]
_TYPES: dict[str, Any] = {
    "str": _StrictStr,
    "int": pydantic.StrictInt,
    "float": Annotated[float, pydantic.Field(allow_inf_nan=False)],
    "bool": pydantic.StrictBool,
    "timestamp": pydantic.AwareDatetime,
    "date": dt.date,
}


def request_model(model_name: str, fields: Sequence[RequestField]) -> type[pydantic.BaseModel]:
    """A pydantic model of one prediction request: required fields non-null, optional ones may be left out."""
    definitions: dict[str, Any] = {}
    for f in fields:
        kind = _TYPES.get(f.kind)
        if kind is None:
            raise ValueError(f"request field {f.name!r} has kind {f.kind!r}, which requests cannot carry")
        definitions[f.name] = (kind, ...) if f.required else (kind | None, None)
    return pydantic.create_model(
        f"{model_name}_request", __config__=pydantic.ConfigDict(extra="forbid", frozen=True), **definitions,
    )


def _errors(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 shape: each error with its location under ``body``."""
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors(include_url=False)]


# --------------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (several apps may share a process)."""

    LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
    AGE_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 7 * 86_400,
                   30 * 86_400, 365 * 86_400)

    def __init__(self) -> None:
        disable_created_metrics()  # no `_created` series: half the scrape, nothing a dashboard uses
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fti_online_requests", "Prediction requests answered, by status.",
                                ["model", "endpoint", "status"], registry=r)
        self.predictions = Counter("fti_online_predictions", "Rows scored.", ["model", "version"], registry=r)
        self.errors = Counter("fti_online_errors", "Failed requests, by reason.", ["model", "reason"], registry=r)
        self.latency = Histogram("fti_online_request_latency_seconds", "Request latency inside the service.",
                                 ["model", "endpoint"], buckets=self.LATENCY_BUCKETS, registry=r)
        self.model_version = Gauge("fti_online_model_version", "Version of the model being served.", ["model"],
                                   registry=r)
        self.model_swaps = Counter("fti_online_model_swaps", "Times a newly published champion was swapped in.",
                                   ["model"], registry=r)
        self.feature_age = Histogram("fti_online_feature_age_seconds",
                                     "Age of the feature row used (as_of - its event time), per group.",
                                     ["group"], buckets=self.AGE_BUCKETS, registry=r)
        self.features_missing = Counter("fti_online_features_missing", "Lookups with no row within TTL.",
                                        ["group"], registry=r)
        self.store_lag = Gauge("fti_online_store_latest_event_age_seconds",
                               "Now minus the latest event time materialized, per group.", ["group"], registry=r)
        self.store_materialized = Gauge("fti_online_store_materialized_age_seconds",
                                        "Now minus the last materialization, per group.", ["group"], registry=r)
        self.log_dropped = Gauge("fti_online_prediction_log_dropped", "Prediction log records dropped (queue full).",
                                 registry=r)
        self.log_pending = Gauge("fti_online_prediction_log_pending", "Prediction log records not yet written.",
                                 registry=r)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoized: a request updates the same few series every time, and
        ``labels`` (validation, a lock) costs more than the update itself."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


# --------------------------------------------------------------------------------------------------
# The served model


def _on_demand(view: FeatureView) -> Callable[..., list[Mapping[str, Any]]] | None:
    """``(view, requests, stored_features) -> [dict]``: the view's on-demand features for several requests, from
    ``models_ml.definitions.on_demand`` (``compute_many``, else ``compute_online`` per request); None when the view has
    none or the project defines no such module."""
    if not getattr(view, "on_demand", None):
        return None
    try:
        module = importlib.import_module("models_ml.definitions.on_demand")
    except ModuleNotFoundError:
        return None
    many = getattr(module, "compute_many", None)
    if many is not None:
        return many
    one = getattr(module, "compute_online", None)
    if one is None:
        return None
    return lambda view, requests, stored: [one(view, r, s) for r, s in zip(requests, stored)]


@dataclass(frozen=True)
class ServedModel:
    """One loaded champion: immutable, swapped whole when a new one is published."""

    name: str
    version: int
    pointer: Pointer
    model: Model
    scorer: encode.Scorer
    view: FeatureView
    request_type: type[pydantic.BaseModel]
    batch_type: pydantic.TypeAdapter
    group_labels: tuple[str, ...]
    group_ids: tuple[str, ...]
    pointer_stamp: tuple[int, int]
    loaded_at: dt.datetime
    on_demand: Callable[..., list[Mapping[str, Any]]] | None = None

    @classmethod
    def load(cls, pointer: Pointer, stamp: tuple[int, int]) -> ServedModel:
        model = load_model(pointer.model_dir)
        view = pointer.view
        request_type = request_model(pointer.model_name, pointer.fields)
        batch = pydantic.TypeAdapter(Annotated[list[request_type], pydantic.Field(min_length=1, max_length=MAX_BATCH)])
        served = cls(
            name=pointer.model_name, version=pointer.version, pointer=pointer, model=model,
            scorer=encode.Scorer(model), view=view, request_type=request_type, batch_type=batch,
            group_labels=tuple(view.group_labels), group_ids=tuple(group_id(r.group.name, r.group.version) for r in view.features),
            pointer_stamp=stamp, loaded_at=dt.datetime.now(UTC), on_demand=_on_demand(view),
        )
        unknown = [f for f in model.spec.features if f not in set(view.feature_columns) and served.on_demand is None]
        if unknown:
            raise ValueError(f"model {pointer.model_name} v{pointer.version} needs features {unknown} that its "
                             f"feature view does not produce and no on-demand function computes")
        return served

    def score(self, store: OnlineStore, items: Sequence[Mapping[str, Any]], received_at: dt.datetime,
              metrics: Metrics) -> list[dict[str, Any]]:
        """Look up, compute on-demand features, score; one response dict per item."""
        view = self.view
        spine_time = view.label.spine_time
        as_of = [item.get(spine_time) or received_at for item in items]
        found = store.lookup(view, items, as_of)
        rows = []
        for item, stored in zip(items, found.features):
            row = {name: item.get(name) for name in view.label.request_features}
            row.update(stored)
            rows.append(row)
        if self.on_demand is not None:
            for row, computed in zip(rows, self.on_demand(view, items, found.features)):
                row.update(computed)
        scores = self.scorer.predict(rows)
        out = []
        for i, item in enumerate(items):
            freshness: dict[str, Any] = {}
            missing = []
            for label, match in zip(self.group_labels, found.matches[i]):
                if match.found:
                    freshness[label] = {"event_at": match.event_at.isoformat(), "age_seconds": match.age_seconds}
                    metrics.child(metrics.feature_age, match.group).observe(max(match.age_seconds, 0.0))
                else:
                    freshness[label] = None
                    missing.append(label)
                    metrics.child(metrics.features_missing, match.group).inc()
            out.append({
                "model": self.name, "version": self.version, "score": float(scores[i]),
                "prediction_id": uuid.uuid4().hex, "as_of": as_of[i].isoformat(),
                "missing_groups": missing, "freshness": freshness, "_row": rows[i],
            })
        return out


@dataclass
class ServiceState:
    """What the app shares between requests and the watcher thread. ``models`` is replaced, never mutated."""

    settings: Settings
    store: OnlineStore
    metrics: Metrics
    log: PredictionLog | None
    only: tuple[str, ...] | None
    poll_seconds: float
    freeze_heap: bool = False
    models: dict[str, ServedModel] = field(default_factory=dict)
    freshness: dict[str, Any] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- models ------------------------------------------------------------------------------------------

    def _pointer_files(self) -> dict[str, Any]:
        names = self.only if self.only is not None else tuple(published_models(self.settings))
        return {name: self.settings.models_dir / name / POINTER_FILE for name in names}

    def refresh_models(self) -> None:
        """Load every pointer that changed since it was loaded; swap each in with one assignment."""
        for name, path in self._pointer_files().items():
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            current = self.models.get(name)
            if current is not None and current.pointer_stamp == stamp:
                continue
            try:
                served = ServedModel.load(read_pointer_file(path), stamp)
            except Exception as error:  # noqa: BLE001 - keep serving the old model; say why on /health
                self.load_errors[name] = f"{type(error).__name__}: {error}"
                self.metrics.errors.labels(name, "model_load").inc()
                LOGGER.exception("could not load the published champion of %s", name)
                continue
            self.load_errors.pop(name, None)
            self.models = {**self.models, name: served}  # the atomic swap
            if self.freeze_heap:
                freeze_heap()
            self.metrics.model_version.labels(name).set(served.version)
            if current is not None:
                self.metrics.model_swaps.labels(name).inc()
                LOGGER.warning("%s: now serving v%d (was v%d)", name, served.version, current.version)

    def refresh_freshness(self) -> None:
        try:
            records = self.store.freshness()
        except Exception as error:  # noqa: BLE001 - the store may be down or not materialized yet
            self.freshness = {"error": str(error)}
            return
        now = dt.datetime.now(UTC)
        self.freshness = {group: f.as_dict() for group, f in records.items()}
        for group, f in records.items():
            if f.latest_event_at:
                self.metrics.store_lag.labels(group).set((now - f.latest_event_at).total_seconds())
            if f.materialized_at:
                self.metrics.store_materialized.labels(group).set((now - f.materialized_at).total_seconds())

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh_models()
                self.refresh_freshness()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                LOGGER.exception("watcher iteration failed")

    def start(self) -> None:
        self.refresh_models()
        self.refresh_freshness()
        if self.log is not None:
            self.log.start()
        self._thread = threading.Thread(target=self._watch, name="fti-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.log is not None:
            self.log.close()
        self.store.close()


# --------------------------------------------------------------------------------------------------
# Process tuning for tail latency (``serve`` only: both settings are process-wide)

SWITCH_INTERVAL_SECONDS = 0.0005


def freeze_heap() -> None:
    """Collect, then move every live object to the collector's permanent generation.

    The service process holds ~100,000 long-lived objects (the model, numpy, pandas, pydantic, prometheus); a
    full collection walks them all and stops every request for ~60 ms, which is the whole p99 budget many
    times over. Frozen objects are never walked again. Frozen objects in reference cycles are never freed
    either (a replaced model's pydantic classes, say), so each call first unfreezes: the one full collection
    per model swap (on the watcher thread) frees what the previous swap left behind. Called after start-up
    and after each swap, the only times many long-lived objects appear."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def tune_for_latency() -> None:
    """A shorter GIL switch interval: when a request arrives while a background thread (prediction log,
    model watcher) holds the GIL, the event loop waits at most this long for it instead of Python's 5 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


# --------------------------------------------------------------------------------------------------
# Handlers


def _json(status: int, payload: Any) -> JSONResponse:
    return JSONResponse(payload, status_code=status)


def _log(state: ServiceState, served: ServedModel, items: Sequence[Mapping[str, Any]],
         results: Sequence[dict[str, Any]], received_at: dt.datetime, latency_ms: float) -> None:
    if state.log is None:
        return
    entity = served.view.label.entity
    for item, result in zip(items, results):
        ages = {label: (f["age_seconds"] if f else None) for label, f in result["freshness"].items()}
        state.log.submit((
            result["prediction_id"], received_at, served.name, served.version,
            dt.datetime.fromisoformat(result["as_of"]), {k: item.get(k) for k in entity}, result["score"],
            result["missing_groups"], ages, result.pop("_row"), dict(item), latency_ms,
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
        return _json(422, {"detail": _errors(error)})
    try:
        results = served.score(state.store, items, received_at, metrics)
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
    _log(state, served, items, results, received_at, elapsed * 1000)
    for result in results:
        result.pop("_row", None)
    metrics.child(metrics.requests, name, endpoint, "200").inc()
    metrics.child(metrics.predictions, name, str(served.version)).inc(len(results))
    metrics.child(metrics.latency, name, endpoint).observe(elapsed)
    return _json(200, {"predictions": results} if batch else results[0])


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
        "store": {"kind": state.store.kind, "ready": ready},
        "models": models, "load_errors": state.load_errors, "freshness": state.freshness,
    })


async def metrics_endpoint(request: Request) -> Response:
    state: ServiceState = request.app.state.fti
    if state.log is not None:
        state.metrics.log_dropped.set(state.log.dropped)
        state.metrics.log_pending.set(state.log.pending)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------------------------------
# The app


def create_app(
    settings: Settings,
    *,
    store: OnlineStore | None = None,
    models: Sequence[str] | None = None,
    poll_seconds: float = 1.0,
    log_predictions: bool = True,
    freeze_heap: bool = False,
) -> Starlette:
    """The ASGI app. ``models`` limits the served models (default: every published champion);
    ``freeze_heap`` see :func:`freeze_heap` (on when the app owns its process, as in :func:`serve`)."""
    state = ServiceState(
        settings=settings,
        store=store if store is not None else open_store(settings, create=False),
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
    """Run the service with uvicorn until interrupted (binds ``settings.serve_host``, 127.0.0.1 by default)."""
    import uvicorn

    tune_for_latency()
    app = create_app(settings, models=models, freeze_heap=True)
    uvicorn.run(app, host=host or settings.serve_host, port=port or settings.serve_port, log_level=log_level,
                access_log=False, timeout_keep_alive=30)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models_ml.inference.online.service``: the same as ``fti serve``."""
    parser = argparse.ArgumentParser(prog="python -m models_ml.inference.online.service", description=__doc__.split("\n")[0])
    parser.add_argument("--home", help="state directory (default: $FTI_HOME or ./.fti)")
    parser.add_argument("--host", help="address to bind (default: $FTI_SERVE_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $FTI_SERVE_PORT or 8000)")
    parser.add_argument("--model", action="append", help="serve only this model (repeatable)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(load_settings(args.home), host=args.host, port=args.port, models=args.model, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
