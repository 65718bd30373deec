"""Serving the challenger beside the champion: canary routing and shadow scoring.

**Canary** (``canary_share`` > 0): a request whose entity falls in the share is answered by the challenger.
The share is decided by a stable hash of the label's entity key values (BLAKE2b of their JSON, not
Python's ``hash()``, which is salted per process): the same entity gets the same model in every request,
every process and every restart, so an entity never flips between two models' answers, and raising the
share only moves entities from champion to challenger, never back.

**Shadow** (``shadow``): the champion answers every request; the request's items go to a bounded queue that
one background thread drains, scoring them with the challenger (its own view, so its own pinned group
versions) and logging its scores as ``shadow`` rows paired to the champion's answers. The request only
appends to the queue: when it is full the job is dropped and counted, never waited for; a challenger that
fails or is slow costs the thread, not the response. Jobs waiting together are scored in one call (one
store read, one matrix), so the thread keeps up at a fraction of the request path's cost per item.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.scoring import NewestEvents, ServedModel
from models_ml.inference.online.store import OnlineStore

LOGGER = logging.getLogger("fti.online")
_SCALE = float(2 ** 64)


def entity_fraction(entity: Sequence[str], item: Mapping[str, Any]) -> float:
    """A number in [0, 1) fixed by the item's entity key values (in ``entity`` order), the same in every
    process: the canary takes the entities below its share."""
    key = json.dumps([item.get(k) for k in entity], default=str, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / _SCALE


def in_canary(share: float, entity: Sequence[str], item: Mapping[str, Any]) -> bool:
    return share > 0 and entity_fraction(entity, item) < share


@dataclass(frozen=True)
class ShadowJob:
    """One answered request for the challenger to score: its items, their champion answers' ids."""

    challenger: ServedModel
    items: Sequence[Mapping[str, Any]]
    champion_ids: Sequence[str]
    received_at: dt.datetime


class ShadowScorer:
    """The bounded queue and the thread that scores shadow jobs (see the module docstring).

    ``log`` receives ``(job, responses, rows, seconds)`` for each job scored; counters: ``scored`` (items),
    ``dropped`` (jobs refused because the queue was full), ``failed`` (jobs whose scoring raised)."""

    MAX_ITEMS_PER_CALL = 256

    def __init__(self, store: OnlineStore, metrics: Metrics, newest: NewestEvents,
                 freshness: Callable[[], Mapping[str, Any]],
                 log: Callable[[ShadowJob, list[dict[str, Any]], list[dict[str, Any]], float], None],
                 max_queue: int = 1000) -> None:
        self.store, self.metrics, self.newest, self.freshness, self.log = store, metrics, newest, freshness, log
        self.queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=max_queue)
        self.scored = self.dropped = self.failed = 0
        self._thread: threading.Thread | None = None

    # -- the request side (event loop) --------------------------------------------------------------------

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job`` unless the queue is full (then it is dropped and counted); never blocks."""
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            self.metrics.child(self.metrics.shadow_jobs, job.challenger.name, "dropped").inc()
            return False
        return True

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def stats(self) -> dict[str, Any]:
        return {"alive": self._thread is not None and self._thread.is_alive(), "pending": self.pending,
                "scored": self.scored, "dropped": self.dropped, "failed": self.failed}

    # -- the thread --------------------------------------------------------------------------------------

    def start(self) -> ShadowScorer:
        self._thread = threading.Thread(target=self._run, name="fti-shadow", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the jobs queued so far (the sentinel waits behind them)."""
        if self._thread is None:
            return
        try:
            self.queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while sum(len(j.items) for j in jobs) < self.MAX_ITEMS_PER_CALL:
                try:
                    job = self.queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            for group in _by_challenger(jobs):
                self._score(group)
            if stop:
                return

    def _score(self, jobs: list[ShadowJob]) -> None:
        challenger = jobs[0].challenger
        items = [item for job in jobs for item in job.items]
        # Each item keeps its own request's arrival as its default as-of time, as the champion had it.
        spine_time = challenger.view.label.spine_time
        dated = [item if item.get(spine_time) else {**item, spine_time: job.received_at}
                 for job in jobs for item in job.items]
        started = time.perf_counter()
        try:
            scored = challenger.score(self.store, dated, jobs[0].received_at, None,
                                      self.newest.of(self.freshness()))
        except Exception:  # noqa: BLE001 - the challenger's failure is counted and logged, never answered
            self.failed += len(jobs)
            self.metrics.child(self.metrics.shadow_jobs, challenger.name, "failed").inc(len(jobs))
            LOGGER.exception("shadow scoring of %s v%d failed", challenger.name, challenger.version)
            return
        seconds = time.perf_counter() - started
        self.scored += len(items)
        self.metrics.child(self.metrics.shadow_jobs, challenger.name, "scored").inc(len(jobs))
        self.metrics.child(self.metrics.variant_predictions, challenger.name, "shadow",
                           str(challenger.version)).inc(len(items))
        self.metrics.child(self.metrics.variant_latency, challenger.name, "shadow").observe(seconds)
        start = 0
        for job in jobs:
            end = start + len(job.items)
            try:
                self.log(job, scored.responses[start:end], scored.rows[start:end], seconds * 1000)
            except Exception:  # noqa: BLE001 - logging must not stop the thread
                LOGGER.exception("logging a shadow prediction failed")
            start = end


def _by_challenger(jobs: list[ShadowJob]) -> list[list[ShadowJob]]:
    """Consecutive jobs of the same challenger object (a swap or another model starts a new group)."""
    groups: list[list[ShadowJob]] = []
    for job in jobs:
        if groups and groups[-1][0].challenger is job.challenger:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups
