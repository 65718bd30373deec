"""Drift of the online prediction log, per hour: the real log writer's file, the inputs read out of its
JSON rows in the engine. An hour that served exactly the reference rows has no drift at all; an hour with
one input moved has drift on that input alone."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from monitoring_testing import MODEL

from models_ml.core.time import TimeRange
from models_ml.inference.online.prediction_log import PredictionLog
from models_ml.monitoring.online import hour_windows
from models_ml.monitoring.pipeline import compute_drift
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.reference import MonitoringError, reference_rows
from models_ml.offline.store import opened
from models_ml.training import registry

UTC = dt.timezone.utc
SAME, MOVED = dt.datetime(2013, 1, 11, 9, tzinfo=UTC), dt.datetime(2013, 1, 11, 10, tzinfo=UTC)
SHIFTED = "distance_miles"


def log_reference_twice(settings) -> int:
    """The champion's reference rows as served in the 09:00 hour, and again at 10:00 with
    ``distance_miles`` tripled, written by the service's own log writer."""
    version, model = registry.load(settings, MODEL)
    with opened(settings) as store:  # the snapshot registry is created when missing: a writer
        rows, _ = reference_rows(store, version, model)
    log = PredictionLog(settings.prediction_log_path).start()
    for hour, factor in ((SAME, 1), (MOVED, 3)):
        for i, row in enumerate(rows.to_pylist()):
            score = row.pop(SCORE_FEATURE)
            if row[SHIFTED] is not None:
                row[SHIFTED] *= factor
            at = hour + dt.timedelta(seconds=i % 3600)
            log.submit((uuid.uuid4().hex, at, MODEL, version.version, at, {"flight_id": i}, score, [], {}, row,
                        {}, 1.0))
    log.close()
    return rows.num_rows


@pytest.fixture(scope="module")
def logged_home(monitored_home):
    monitored_home.prediction_log_path.unlink(missing_ok=True)
    rows = log_reference_twice(monitored_home)
    yield monitored_home, rows
    monitored_home.prediction_log_path.unlink(missing_ok=True)


def test_the_hour_serving_the_reference_has_no_drift_and_the_moved_input_drifts_alone(logged_home):
    settings, rows = logged_home
    run = compute_drift(settings, MODEL, source="online")
    assert [w.start for w in run.windows] == [SAME, MOVED]
    with opened(settings, read_only=True) as store:
        got = {(r["feature"], r["window_start"].astimezone(UTC), r["statistic"]): r["value"] for r in store.query(
            "select * from monitoring.feature_drift where source = 'online'")}
    features = {*registry.resolve(settings, MODEL).features, SCORE_FEATURE}
    assert {f for f, _, _ in got} == features
    for feature in features:
        assert got[(feature, SAME, "rows")] == got[(feature, MOVED, "rows")] == rows
        for statistic in ("psi", "ks", "missing_rate_change", "out_of_range_share", "unseen_share"):
            for hour in (SAME, MOVED) if feature != SHIFTED else (SAME,):
                assert got.get((feature, hour, statistic), 0.0) == pytest.approx(0.0, abs=1e-12), \
                    (feature, hour, statistic)
    assert got[(SHIFTED, MOVED, "psi")] > 1 and got[(SHIFTED, MOVED, "ks")] > 0.5
    assert got[(SHIFTED, MOVED, "out_of_range_share")] > 0.1  # the longest flights, tripled


def test_the_hours_cover_the_span_from_the_hour_it_starts_in():
    assert hour_windows(TimeRange.of("2024-01-01T10:30:00+00:00", "2024-01-01T12:00:00+00:00")) == [
        TimeRange.of("2024-01-01T10:00:00+00:00", "2024-01-01T11:00:00+00:00"),
        TimeRange.of("2024-01-01T11:00:00+00:00", "2024-01-01T12:00:00+00:00")]


def test_a_missing_log_or_version_is_refused_naming_the_fix(logged_home):
    settings, _ = logged_home
    with pytest.raises(MonitoringError, match="has no prediction of model flight_delay v1 from 2013-01-12"):
        compute_drift(settings, MODEL, source="online", first_day=dt.date(2013, 1, 12))
    path = settings.prediction_log_path
    path.rename(path.with_suffix(".aside"))
    try:
        with pytest.raises(MonitoringError, match="no prediction log at .*fti serve"):
            compute_drift(settings, MODEL, source="online")
    finally:
        path.with_suffix(".aside").rename(path)
