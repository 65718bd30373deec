"""Where a run's time went: per stage (:class:`Timings`) or between successive steps (:class:`Laps`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Timings:
    """Seconds spent per stage of a run, in the order the stages ran (a stage entered twice adds up)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class Laps:
    """Seconds between successive marks, for a flow's summary: ``lap("train")`` records the time since the
    previous mark (or since the Laps was made) under "train", rounded to ``digits``."""

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._clock, self.digits)
        self._clock = now
