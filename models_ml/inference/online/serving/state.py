"""What the service's requests share with its watcher thread: the served models, the store's freshness.

**Champion swaps**: the watcher polls each pointer's modification time (every ``poll_seconds``); on a
change it loads the new pointer and model in that thread and then replaces one reference. A request holds
the model object it started with, so no request fails or mixes versions during a swap. The new pointer
carries the new model's view, pinned to its group versions (an upgrade to a model trained on v2 of a group
looks up v2 from then on; a rollback, v1 again). A model is swapped in only once the store holds every
group version it looks up (the registry refuses such a promotion, but a store may be rebuilt or lag
behind): until then the old model keeps answering and ``/health`` says degraded, naming the groups. The same thread
refreshes the store's freshness (for ``/health`` and the metrics), so no request waits for it, and restarts
the prediction log's writer thread should it ever die (``/health`` says degraded until then).

**Challengers** (only with canary or shadow on, see :mod:`.variants`): the same watcher follows each served
model's challenger pointer (``challenger.json``, :func:`models_ml.training.champion_pointer.publish_challenger`) and
swaps challengers the same way, with their own pinned views: a challenger trained on other group versions
looks those up. A challenger the store cannot serve yet, or that fails to load, is not served (the champion
answers alone; ``/health/details`` says why under ``challenger_errors``, without degrading ``/health``); a
removed pointer withdraws it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models_ml.core.settings import Settings
from models_ml.inference.online.prediction_log import PredictionLog
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.scoring import ServedModel
from models_ml.inference.online.serving.tuning import freeze_heap
from models_ml.inference.online.store import UTC, OnlineStore, online_lookups
from models_ml.training.champion_pointer import (
    POINTER_FILE,
    challenger_path,
    interrupted_models,
    published_models,
    read_pointer_file,
)

LOGGER = logging.getLogger("fti.online")


@dataclass
class ServiceState:
    """Shared between requests and the watcher thread. ``models`` is replaced, never mutated."""

    settings: Settings
    store: OnlineStore
    metrics: Metrics
    log: PredictionLog | None
    only: tuple[str, ...] | None  # the models to serve; None: every published champion
    poll_seconds: float
    freeze_heap: bool = False  # after each load (see tuning.freeze_heap): only when serving owns the process
    serve_challengers: bool = False  # canary or shadow on: load each model's challenger pointer too
    models: dict[str, ServedModel] = field(default_factory=dict)
    challengers: dict[str, ServedModel] = field(default_factory=dict)  # replaced, never mutated
    challenger_errors: dict[str, str] = field(default_factory=dict)
    shadow: Any = None  # the ShadowScorer (see .variants) when shadow serving is on
    freshness: dict[str, Any] = field(default_factory=dict)
    load_errors: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0  # prediction requests being read or answered (only the event loop changes it)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- models ------------------------------------------------------------------------------------------

    def _pointer_files(self) -> dict[str, Path]:
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
                if current is not None:
                    self._require_groups(served)
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
        if self.serve_challengers:
            self.refresh_challengers()

    def refresh_challengers(self) -> None:
        """Load every challenger pointer that changed (of a served champion); withdraw removed ones."""
        for name in list(self.models):
            path = challenger_path(self.settings, name)
            current = self.challengers.get(name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                if current is not None or name in self.challenger_errors:
                    self.challengers = {k: v for k, v in self.challengers.items() if k != name}
                    self.challenger_errors.pop(name, None)
                    self.metrics.challenger_version.labels(name).set(0)
                    LOGGER.warning("%s: challenger withdrawn (no challenger pointer)", name)
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            if current is not None and current.pointer_stamp == stamp:
                continue
            try:
                served = ServedModel.load(read_pointer_file(path), stamp)
                if served.version == self.models[name].version:
                    raise ValueError(f"the challenger pointer names v{served.version}, the champion: nothing to "
                                     f"serve beside it (`fti online publish` removes a stale pointer)")
                unknown = sorted(f.name for f in served.pointer.fields if f.required
                                 and f.name not in self.models[name].field_names)
                if unknown:
                    raise ValueError(f"challenger v{served.version} needs request fields {unknown} that the "
                                     f"champion's requests do not carry")
                self._require_groups(served, keeps_serving="the champion answers alone")
            except Exception as error:  # noqa: BLE001 - the champion serves alone; say why on /health/details
                if self.challenger_errors.get(name) is None:
                    LOGGER.exception("could not load the challenger of %s", name)
                self.challenger_errors[name] = f"{type(error).__name__}: {error}"
                self.metrics.errors.labels(name, "challenger_load").inc()
                self.challengers = {k: v for k, v in self.challengers.items() if k != name}
                continue
            self.challenger_errors.pop(name, None)
            self.challengers = {**self.challengers, name: served}
            self.metrics.challenger_version.labels(name).set(served.version)
            LOGGER.warning("%s: challenger v%d served beside champion v%d", name, served.version,
                           self.models[name].version)

    def _require_groups(self, served: ServedModel, keeps_serving: str | None = None) -> None:
        """Refuse (ValueError) a replacement whose group versions the store does not hold: swapping it in
        would fail every request until the store caught up."""
        held = self.store.freshness()
        missing = [lookup.group_id for lookup in online_lookups(served.view) if lookup.group_id not in held]
        if missing:
            keeps_serving = keeps_serving or f"v{self.models[served.name].version} keeps serving"
            raise ValueError(f"v{served.version} looks up {', '.join(missing)}, which the online store does not "
                             f"hold yet: materialize them (`fti online materialize`); {keeps_serving}")

    # -- the store's freshness ---------------------------------------------------------------------------

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

    # -- the watcher -------------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for step in (self._supervise_log, self.refresh_models, self.refresh_freshness, self.observe_gauges):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                    LOGGER.exception("watcher step %s failed", step.__name__)

    def observe_gauges(self) -> None:
        """The prediction log's and the shadow queue's figures into their gauges (each scrape and each poll:
        with several workers, a scrape reads every worker's gauges as its watcher last set them)."""
        self.metrics.observe_log(self.log)
        if self.shadow is not None:
            self.shadow.collect()
            self.metrics.shadow_pending.set(self.shadow.pending)
        self.metrics.flush()

    def _supervise_log(self) -> None:
        if self.log is not None:
            self.log.ensure_running()  # a writer thread that died is started again

    def reconcile_pointers(self) -> None:
        """Finish or undo a promotion that was interrupted half-way, before its pointer is loaded. Only then
        is the registry read: otherwise the service never opens the warehouse."""
        if not interrupted_models(self.settings):
            return
        from models_ml.training.registry import reconcile_at_service_start

        try:
            for mismatch in reconcile_at_service_start(self.settings):
                LOGGER.warning("champion pointer of %s", mismatch.line())
        except Exception:  # noqa: BLE001 - serve the pointers as they are rather than not at all
            LOGGER.exception("could not reconcile the champion pointers with the registry")

    def start(self) -> None:
        self.reconcile_pointers()
        self.refresh_models()
        self.refresh_freshness()
        if self.log is not None:
            self.log.start()
        if self.shadow is not None:
            self.shadow.start()
        self._thread = threading.Thread(target=self._watch, name="fti-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.shadow is not None:
            self.shadow.close()  # before the log: its last scores are logged
        if self.log is not None:
            self.log.close()
        self.metrics.flush()  # workers: the last counts into the shared files
        self.store.close()
