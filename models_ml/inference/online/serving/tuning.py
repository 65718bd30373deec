"""Process settings for tail latency, for a process that serves and does nothing else (both are
process-wide, so only ``serve`` applies them)."""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_SECONDS = 0.0005


def freeze_heap() -> None:
    """Collect, then move every live object to the collector's permanent generation.

    The service process holds a great many long-lived objects (the model, numpy, pandas, pydantic,
    prometheus); a full collection walks them all and stops every request for far longer than the latency
    budget. Frozen objects are never walked again. Frozen objects in reference cycles are never freed
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
