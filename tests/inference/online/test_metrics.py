"""The workers' metrics: counts added up in the process and written on flush give the very series that
writing each update at once gives (see models_ml/inference/online/serving/metrics.py)."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from models_ml.inference.online.serving.metrics import Metrics, _DeferredCounter, _DeferredHistogram


def _samples(metric) -> list[tuple[str, dict, float]]:
    return [(s.name, s.labels, s.value) for family in metric.collect() for s in family.samples
            if not s.name.endswith("_created")]


def test_deferred_histogram_and_counter_equal_direct_updates():
    registry = CollectorRegistry()
    direct = Histogram("direct", "d", ["x"], buckets=Metrics.LATENCY_BUCKETS, registry=registry)
    deferred = Histogram("deferred", "d", ["x"], buckets=Metrics.LATENCY_BUCKETS, registry=registry)
    counted = Counter("counted", "c", ["x"], registry=registry)
    at_once = Counter("at_once", "c", ["x"], registry=registry)
    wrapped, counter = _DeferredHistogram(deferred.labels("a")), _DeferredCounter(counted.labels("a"))
    rng = random.Random(3)
    # every bucket, their exact bounds, beyond the last, zero
    amounts = [rng.uniform(0, 1.2) for _ in range(500)] + list(Metrics.LATENCY_BUCKETS) + [0.0, 7.0, math.nan]
    for i, amount in enumerate(amounts):
        direct.labels("a").observe(amount)
        wrapped.observe(amount)
        at_once.labels("a").inc(i % 3)
        counter.inc(i % 3)
        if i % 97 == 0:
            wrapped.flush()
            counter.flush()
    wrapped.flush()
    counter.flush()
    wrapped.flush()  # nothing pending: changes nothing

    def named(samples, old, new):
        return [(n.replace(old, new), labels, v) for n, labels, v in samples]

    got, want = _samples(deferred), named(_samples(direct), "direct", "deferred")
    assert [s[:2] for s in got] == [s[:2] for s in want]
    for (_, _, a), (_, _, b) in zip(got, want):
        assert a == pytest.approx(b, rel=1e-12, nan_ok=True)  # the sum: the same values added in another order
    assert _samples(counted) == named(_samples(at_once), "at_once", "counted")
    with pytest.raises(ValueError):
        counter.inc(-1)
