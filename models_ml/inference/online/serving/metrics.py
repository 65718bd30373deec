"""The service's Prometheus metrics: requests, errors, latency, model version and swaps, feature age, time
warnings, the store's freshness and the prediction log's backlog and health; per variant (champion, canary,
shadow: see :mod:`.variants`) the rows scored and the latency, and the shadow queue's jobs and backlog.

Label values are bounded: a model label is a served model's name or ``unknown`` (any other name in a URL),
a status, reason or warning one of the handler's own, a group one of the served views'.

With several worker processes (:mod:`.workers`) the values live in prometheus_client's multiprocess files
and a scrape adds up every worker's (:meth:`Metrics.exposition`); each gauge's ``multiprocess_mode`` says
how its workers' values combine. One process: ``multiprocess_mode`` is ignored. A write to those files
costs a lock, a pid check and a memory-mapped write per value (a histogram's observation two), about 50 µs
of a request's own time on this machine, so there a request's counts are added up in the process
(:class:`_DeferredCounter`, :class:`_DeferredHistogram`) and written by :meth:`Metrics.flush`: every
watcher poll (a second) and before this process's own scrape; another worker's counts are at most a poll
behind."""

from __future__ import annotations

import bisect
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest


class Metrics:
    """The metrics in a registry of their own (several apps may share a process)."""

    LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
    AGE_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 7 * 86_400,
                   30 * 86_400, 365 * 86_400)

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: the workers' shared metrics directory (see :mod:`.workers`), None for one
        process."""
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None:
            from prometheus_client import values

            if not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
                                   "start workers through models_ml.inference.online.serving.workers")
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
                                   registry=r, multiprocess_mode="livemostrecent")
        self.model_swaps = Counter("fti_online_model_swaps", "Times a newly published champion was swapped in.",
                                   ["model"], registry=r)
        self.feature_age = Histogram("fti_online_feature_age_seconds",
                                     "Age of the feature row used (as_of - its event time), per group.",
                                     ["group"], buckets=self.AGE_BUCKETS, registry=r)
        self.features_missing = Counter("fti_online_features_missing", "Lookups with no row within TTL.",
                                        ["group"], registry=r)
        self.warnings = Counter("fti_online_warnings", "Predictions answered with a time warning, by kind "
                                "(features_from_future, store_older_than_ttl) and group.",
                                ["model", "group", "warning"], registry=r)
        self.store_lag = Gauge("fti_online_store_latest_event_age_seconds",
                               "Now minus the latest event time materialized, per group.", ["group"], registry=r,
                               multiprocess_mode="livemostrecent")
        self.store_materialized = Gauge("fti_online_store_materialized_age_seconds",
                                        "Now minus the last materialization, per group.", ["group"], registry=r,
                                        multiprocess_mode="livemostrecent")
        self.log_dropped = Gauge("fti_online_prediction_log_dropped", "Prediction log records dropped (queue full).",
                                 registry=r, multiprocess_mode="sum")
        self.log_pending = Gauge("fti_online_prediction_log_pending", "Prediction log records not yet written.",
                                 registry=r, multiprocess_mode="livesum")
        self.log_errors = Gauge("fti_online_prediction_log_errors",
                                "Prediction log records that could not be written (skipped).", registry=r,
                                multiprocess_mode="sum")
        self.log_restarts = Gauge("fti_online_prediction_log_restarts",
                                  "Times the prediction log's writer was started again after dying.", registry=r,
                                  multiprocess_mode="sum")
        self.log_pruned = Gauge("fti_online_prediction_log_pruned", "Prediction log rows deleted by retention.",
                                registry=r, multiprocess_mode="sum")
        self.log_up = Gauge("fti_online_prediction_log_up",
                            "1 while the prediction log writes; 0 while its writer is down or paused (disk).",
                            registry=r, multiprocess_mode="livemin")
        self.variant_predictions = Counter("fti_online_variant_predictions",
                                           "Rows scored, by variant (champion, canary, shadow) and model version.",
                                           ["model", "variant", "version"], registry=r)
        self.variant_latency = Histogram("fti_online_variant_latency_seconds",
                                         "Champion and canary: request latency inside the service; shadow: the "
                                         "challenger's scoring of a queued call, off the request path.",
                                         ["model", "variant"], buckets=self.LATENCY_BUCKETS, registry=r)
        self.challenger_version = Gauge("fti_online_challenger_version",
                                        "Version of the challenger served beside the champion (canary or shadow).",
                                        ["model"], registry=r, multiprocess_mode="livemostrecent")
        self.shadow_jobs = Counter("fti_online_shadow_jobs", "Shadow jobs (one per answered request), by outcome: "
                                   "scored, dropped (queue full), failed (the challenger raised).",
                                   ["model", "outcome"], registry=r)
        self.shadow_pending = Gauge("fti_online_shadow_pending", "Shadow jobs queued, not yet scored.", registry=r,
                                    multiprocess_mode="livesum")
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._deferred: list[_DeferredCounter | _DeferredHistogram] = []

    def observe_log(self, log: Any) -> None:
        """Copy the prediction log's counters (a :class:`~models_ml.inference.online.prediction_log.PredictionLog`
        or ``None``) into their gauges; called on each scrape and by the watcher every poll (so that with
        several workers every worker's gauges are current, whichever answers the scrape)."""
        if log is None:
            return
        self.log_dropped.set(log.dropped)
        self.log_pending.set(log.pending)
        self.log_errors.set(log.errors)
        self.log_restarts.set(log.restarts)
        self.log_pruned.set(log.pruned)
        self.log_up.set(1 if log.healthy else 0)

    def exposition(self) -> bytes:
        """The Prometheus text of every metric: this process's, or with workers all workers' added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        self.flush()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def flush(self) -> None:
        """Write the counts added up since the last flush (workers only; see the module docstring)."""
        for deferred in list(self._deferred):
            deferred.flush()

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoized: a request updates the same few series every time, and
        ``labels`` (validation, a lock) costs more than the update itself. With workers, a counter's or a
        histogram's child that adds up in the process until :meth:`flush`."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            if self.multiprocess_dir is not None and isinstance(metric, (Counter, Histogram)):
                child = _DeferredHistogram(child) if isinstance(metric, Histogram) else _DeferredCounter(child)
                self._deferred.append(child)
            child = self._children[key] = child
        return child


class _DeferredCounter:
    """A counter child's increments, added up here until :meth:`flush` writes them (the event loop and
    the watcher thread both count, hence the lock: uncontended, a fraction of a microsecond)."""

    __slots__ = ("_child", "_lock", "_pending")

    def __init__(self, child: Any) -> None:
        self._child, self._lock, self._pending = child, threading.Lock(), 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self._pending += amount

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, 0.0
        if pending:
            self._child.inc(pending)


class _DeferredHistogram:
    """A histogram child's observations, as per-bucket counts and a sum until :meth:`flush` adds them to
    the child's values: the bucket is the first whose upper bound is at least the amount, as
    ``Histogram.observe`` chooses it."""

    __slots__ = ("_child", "_bounds", "_lock", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child, self._bounds, self._lock = child, list(child._upper_bounds), threading.Lock()
        self._counts, self._sum = [0] * len(self._bounds), 0.0

    def observe(self, amount: float) -> None:
        i = bisect.bisect_left(self._bounds, amount) if amount == amount else len(self._bounds)  # NaN: none
        with self._lock:
            self._sum += amount
            if i < len(self._counts):
                self._counts[i] += 1

    def flush(self) -> None:
        with self._lock:
            counts, total = self._counts, self._sum
            self._counts, self._sum = [0] * len(self._bounds), 0.0
        if not any(counts):
            return
        self._child._sum.inc(total)
        for bucket, count in zip(self._child._buckets, counts):
            if count:
                bucket.inc(count)
