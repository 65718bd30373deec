"""Serving the challenger beside the champion: canary routing and shadow scoring.

**Canary** (``canary_share`` > 0): a request whose entity falls in the share is answered by the challenger.
The share is decided by a stable hash of the label's entity key values (BLAKE2b of their JSON, not
Python's ``hash()``, which is salted per process): the same entity gets the same model in every request,
every process and every restart, so an entity never flips between two models' answers, and raising the
share only moves entities from champion to challenger, never back.

**Shadow** (``shadow``): the champion answers every request; the request's items go to a bounded queue
that a **separate process** drains, scoring them with the challenger (its own view, so its own pinned
group versions, loaded from its pointer there) and writing its scores to the prediction log as ``shadow``
rows paired to the champion's answers. The request only appends to the queue: when it is full the job is
dropped and counted, never waited for. A process, not a thread: a thread scoring in the service's
process competes with the event loop for the GIL, and measured at 200 requests/s that raised the p99 by
60 % (``bench/online.py shadow``); in its own process the challenger's cost, failure or stall stays out of
the service. Jobs arriving within 0.2 s are sent together and scored in one call (one store read, one
matrix). The process
reports what it did (rows scored, jobs failed, seconds) through a second queue that the service reads
into its metrics. It runs at the lowest CPU priority (SCHED_IDLE on Linux, from its start, imports included;
else niceness 10), so on busy cores the answers come first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models_ml.core.settings import Settings
from models_ml.inference.online.prediction_log import SHADOW, LogRetention, PredictionLog
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.scoring import Scored, ServedModel, prediction_records
from models_ml.inference.online.store import OnlineStore, open_online_store
from models_ml.training.champion_pointer import read_pointer_file

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


_STOP = None  # the sentinel that ends the process, queued behind the jobs
SHADOW_NICENESS = 10  # the shadow process's lower CPU priority where SCHED_IDLE is missing
COALESCE_SECONDS = 0.2  # how long the service gathers jobs into one message (one scoring call)


class ShadowScorer:
    """The service's side of shadow scoring: the bounded job buffer, the process, its reports (see the
    module docstring). Counters: ``scored`` (items), ``dropped`` (jobs refused: ``max_queue`` jobs were
    waiting), ``failed`` (jobs whose scoring raised).

    A request appends its job to a list; the list goes to the process as one message once its oldest job
    is :data:`COALESCE_SECONDS` old or it holds :attr:`MAX_ITEMS_PER_CALL` items (checked on each offer and by
    the service's watcher): a few pickles and pipe writes a second, not one per request, in the service's
    process. The bound counts jobs offered and not yet reported back, wherever they wait."""

    MAX_ITEMS_PER_CALL = 256

    def __init__(self, settings: Settings, metrics: Metrics, max_queue: int = 1000,
                 min_free_bytes: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self.settings, self.metrics = settings, metrics
        self.max_queue = max_queue
        self.queue = context.Queue()
        self.reports = context.Queue()
        self.min_free_bytes = min_free_bytes
        self.scored = self.dropped = self.failed = 0
        self._unreported: Counter[str] = Counter()  # per challenger: jobs offered and not reported back
        self._buffer: list[tuple] = []
        self._buffered_items = 0
        self._oldest = 0.0
        self._lock = threading.Lock()  # the event loop offers, the watcher flushes
        self._process: Any = None
        self._context = context

    # -- the request side (event loop) --------------------------------------------------------------------

    def offer(self, job: ShadowJob) -> bool:
        """Buffer ``job`` unless ``max_queue`` jobs wait already (then it is dropped and counted); never blocks."""
        challenger = job.challenger
        if self._unreported.total() >= self.max_queue:
            self.dropped += 1
            self.metrics.child(self.metrics.shadow_jobs, challenger.name, "dropped").inc()
            return False
        now = time.monotonic()
        with self._lock:
            if not self._buffer:
                self._oldest = now
            self._buffer.append((str(challenger.pointer.path), challenger.pointer_stamp,
                                 [dict(item) for item in job.items], list(job.champion_ids), job.received_at))
            self._buffered_items += len(job.items)
            self._unreported[challenger.name] += 1
            due = self._buffered_items >= self.MAX_ITEMS_PER_CALL or now - self._oldest >= COALESCE_SECONDS
        if due:
            self.flush()
        return True

    def flush(self, force: bool = False) -> None:
        """Send the buffered jobs to the process as one message (when due, or ``force``)."""
        with self._lock:
            if not self._buffer or not (force or self._buffered_items >= self.MAX_ITEMS_PER_CALL
                                        or time.monotonic() - self._oldest >= COALESCE_SECONDS):
                return
            jobs, self._buffer, self._buffered_items = self._buffer, [], 0
        with contextlib.suppress(ValueError, OSError):  # closed: the service is stopping
            self.queue.put_nowait(jobs)

    @property
    def pending(self) -> int:
        """Jobs offered and not yet reported back (buffered, queued or being scored)."""
        return self._unreported.total() if self._process is not None else 0

    def collect(self) -> None:
        """Send buffered jobs that are due; read the process's reports into the counters and metrics (the
        watcher and /metrics call it)."""
        self.flush()
        while self._process is not None:
            try:
                model, version, items, jobs, failed, seconds = self.reports.get_nowait()
            except queue.Empty:
                return
            m = self.metrics
            with self._lock:  # the watcher and /metrics both collect
                self._unreported[model] -= jobs
            if failed:
                self.failed += jobs
                m.child(m.shadow_jobs, model, "failed").inc(jobs)
                continue
            self.scored += items
            m.child(m.shadow_jobs, model, "scored").inc(jobs)
            m.child(m.variant_predictions, model, "shadow", str(version)).inc(items)
            m.child(m.variant_latency, model, "shadow").observe(seconds)

    def _count_lost(self) -> None:
        """Jobs a stopped process never reported (killed at the deadline, e.g. starved of CPU at its idle
        priority) count as dropped, so scored + dropped + failed always adds up to what was offered."""
        for model, jobs in self._unreported.items():
            if jobs > 0:
                LOGGER.warning("%s: %d shadow job(s) not scored before the shadow process stopped", model, jobs)
                self.dropped += jobs
                self.metrics.child(self.metrics.shadow_jobs, model, "dropped").inc(jobs)
        self._unreported.clear()

    def stats(self) -> dict[str, Any]:
        self.collect()
        return {"alive": self._process is not None and self._process.is_alive(), "pending": self.pending,
                "scored": self.scored, "dropped": self.dropped, "failed": self.failed}

    # -- the process ---------------------------------------------------------------------------------------

    def start(self) -> ShadowScorer:
        self._process = self._context.Process(
            target=run_shadow_process, name="fti-shadow", daemon=True,
            args=(self.settings, self.queue, self.reports, self.MAX_ITEMS_PER_CALL, self.min_free_bytes))
        _start_at_idle_priority(self._process)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the jobs offered so far (the sentinel waits behind them); their scores are logged."""
        if self._process is None:
            return
        self.flush(force=True)
        with contextlib.suppress(queue.Full, ValueError, OSError):
            self.queue.put(_STOP, timeout=timeout)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        self.collect()
        self._count_lost()
        self.queue.cancel_join_thread()  # jobs a killed process left are not waited for
        for channel in (self.queue, self.reports):
            channel.close()
        self._process.close()
        self._process = None


def run_shadow_process(settings: Settings, jobs: Any, reports: Any, max_items: int,
                       min_free_bytes: int | None) -> None:
    """The shadow process: score queued jobs with the challenger their pointer names, log them as shadow
    rows, report each batch; until the sentinel. Ctrl-C is the service's to handle: this process ends when
    the service queues the sentinel (or dies: the process is a daemon)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    store = open_online_store(settings, create=False)
    log = PredictionLog(settings.prediction_log_path, retention=LogRetention(
        max_age_days=None, max_rows=None, max_bytes=None, min_free_bytes=min_free_bytes)).start()
    models: dict[tuple[str, tuple[int, int]], ServedModel] = {}
    try:
        while True:
            batch, stop = _next_batch(jobs, max_items)
            for group in _by_pointer(batch):
                _score(store, log, models, group, reports)
            if stop:
                return
    finally:
        log.close()
        store.close()


def _start_at_idle_priority(process: Any) -> None:
    """Start ``process`` from a short-lived thread that runs at idle priority, so the new process inherits it
    from its first instruction (Linux keeps the policy per thread, and a child takes its forking thread's).
    Lowering it in the child alone came too late: the interpreter's start and the imports of LightGBM, Arrow
    and the store (about a second of CPU) ran at normal priority, beside the service's first answers."""
    failure: list[BaseException] = []

    def start() -> None:
        _idle_policy()  # this thread only
        try:
            process.start()
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(error)

    starter = threading.Thread(target=start, name="fti-shadow-start")
    starter.start()
    starter.join()
    if failure:
        raise failure[0]


def _idle_policy() -> bool:
    """The calling thread runs only on CPU time nothing else wants (Linux's SCHED_IDLE: the service and its
    clients always come first); False where that policy does not exist."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return False
    return True


def _lower_priority() -> None:
    """SCHED_IDLE (already inherited on Linux: see :func:`_start_at_idle_priority`), else niceness
    :data:`SHADOW_NICENESS` where that policy does not exist."""
    if not _idle_policy():
        with contextlib.suppress(OSError):
            os.nice(SHADOW_NICENESS)


def _next_batch(jobs: Any, max_items: int) -> tuple[list[tuple], bool]:
    """The first waiting message of jobs (blocking) and those already waiting behind it, up to ``max_items``
    items; whether to stop. The service sends its jobs gathered (see :class:`ShadowScorer`), so this waits
    for nothing more."""
    first = jobs.get()
    if first is _STOP:
        return [], True
    batch = list(first)
    while sum(len(j[2]) for j in batch) < max_items:
        try:
            more = jobs.get_nowait()
        except queue.Empty:
            break
        if more is _STOP:
            return batch, True
        batch.extend(more)
    return batch, False


def _by_pointer(batch: list[tuple]) -> list[list[tuple]]:
    """Consecutive jobs of the same challenger pointer (a swap or another model starts a new group)."""
    groups: list[list[tuple]] = []
    for job in batch:
        if groups and groups[-1][0][:2] == job[:2]:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def _score(store: OnlineStore, log: PredictionLog, models: dict, jobs: list[tuple], reports: Any) -> None:
    path, stamp = jobs[0][0], jobs[0][1]
    started = time.perf_counter()
    name, version = Path(path).parent.name, None
    try:
        challenger = models.get((path, stamp))
        if challenger is None:
            challenger = ServedModel.load(read_pointer_file(Path(path)), stamp)
            models.clear()  # only the latest pointer of each is scored; an old one is not kept
            models[(path, stamp)] = challenger
        name, version = challenger.name, challenger.version
        spine_time = challenger.view.label.spine_time
        # each item keeps its own request's arrival as its default as-of time, as the champion had it
        dated = [item if item.get(spine_time) else {**item, spine_time: received}
                 for _, _, items, _, received in jobs for item in items]
        scored = challenger.score(store, dated, jobs[0][4], None)
    except Exception:  # noqa: BLE001 - the challenger's failure is counted and logged, never answered
        LOGGER.exception("shadow scoring with %s failed", path)
        reports.put((name, version, 0, len(jobs), True, 0.0))
        return
    seconds = time.perf_counter() - started
    start = 0
    for _, _, items, champion_ids, received in jobs:
        end = start + len(items)
        for record in prediction_records(challenger, SHADOW, items, Scored(scored.responses[start:end],
                                                                           scored.rows[start:end]),
                                         received, seconds * 1000, champion_ids):
            log.submit(record)
        start = end
    reports.put((name, version, start, len(jobs), False, seconds))
