"""Prediction ids are UUIDv7 (RFC 9562): they grow with time, so the prediction log's primary-key index is
appended at its right edge instead of at a random page (bench/online.py: the tail at 2,000 requests/s no
longer grows with the log)."""

from __future__ import annotations

import re
import time
import uuid

from models_ml.inference.online.prediction_log import new_prediction_id


def test_an_id_is_a_version_7_uuid_of_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(new_prediction_id())
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after
    assert re.fullmatch(r"[0-9a-f]{32}", new_prediction_id())  # the form uuid4().hex had


def test_ids_of_later_milliseconds_sort_later_and_none_repeats():
    batches = []
    for _ in range(5):
        batches.append([new_prediction_id() for _ in range(2000)])
        time.sleep(0.002)
    every = [i for batch in batches for i in batch]
    assert len(set(every)) == len(every)
    for earlier, later in zip(batches, batches[1:]):
        assert max(earlier) < min(later)
