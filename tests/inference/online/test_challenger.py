"""Champion against a real challenger, three ways: shadow and canary through the real service, and batch.

One flights home (the ten-day slice): flight_delay v1 is champion, v2 (another seed, fewer leaves) is made
challenger, which publishes its pointer. The service in shadow answers every request with v1 and logs v2's
score of the same request beside it; in canary it answers a stable half of the flights with v2. Then
`fti models compare` (the function behind it) finds the outcomes of the served flights and runs the paired
test (shadow, batch) or the sequential one (canary), checked here against an independent computation from
the log and the label table. A challenger that raises or stalls changes no answer. The fraud example gets a
batch comparison of two card_fraud versions on days whose labels are final.
"""

from __future__ import annotations

import json

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
from fti_testing import FRAUD_CONFIG, copy_home, fit_for_registry, query
from online_testing import FAST, FLIGHT_RANGE, FLIGHT_SPLIT, MODEL, ServerThread, spine_requests

from models_ml.core.time import TimeRange
from models_ml.decisions import statistics as st
from models_ml.decisions.compare import PAIRED_TEST, SEQUENTIAL_TEST, ComparisonError, compare
from models_ml.definitions.catalog import load_catalog
from models_ml.inference.batch.pipeline import predict_window
from models_ml.inference.online.prediction_log import read_prediction_log
from models_ml.inference.online.serving.app import create_app
from models_ml.inference.online.serving.config import ServeConfig
from models_ml.inference.online.serving.variants import entity_fraction
from models_ml.training import registry
from models_ml.training import train as tr
from models_ml.training.champion_pointer import challenger_path, read_pointer_file
from models_ml.training.splits import TimeSplit

pytestmark = pytest.mark.slow

WINDOW = TimeRange.of("2013-01-09", "2013-01-11")  # batch: scheduled departures, UTC
SHARE = 0.5


@pytest.fixture(scope="module")
def home(served_home, tmp_path_factory):
    settings = copy_home(served_home, tmp_path_factory.mktemp("compare") / "home")
    config = tr.TrainConfig(**{**FAST.as_dict(), "seed": 7, "num_leaves": 3, "categorical_features": ()})
    fitted = fit_for_registry(settings, load_catalog(settings).view(MODEL), FLIGHT_RANGE, FLIGHT_SPLIT, config)
    v2 = registry.register_model(settings, MODEL, *fitted)
    registry.promote(settings, MODEL, v2.version, registry.CHALLENGER, reason="candidate")
    return settings


@pytest.fixture(scope="module")
def requests_(home):
    return spine_requests(home, 150)


def _post_all(url: str, bodies: list[dict], rounds: int = 2) -> list[dict]:
    answers = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(rounds):  # each flight twice: one outcome must still count once
            for body in bodies:
                response = client.post(f"/predict/{MODEL}", json=body)
                assert response.status_code == 200, response.text
                answers.append(response.json())
    return answers


def _wait_for_shadow(shadow, jobs: int, timeout: float = 120) -> None:
    """Until the shadow process has reported ``jobs`` jobs (it starts and scores on its own time)."""
    deadline = time.monotonic() + timeout
    while shadow.stats()["scored"] < jobs:
        assert time.monotonic() < deadline, f"the shadow process scored {shadow.stats()} of {jobs} jobs"
        time.sleep(0.1)


def _log(settings):
    return read_prediction_log(settings.prediction_log_path).to_pylist()


def _outcomes(settings) -> dict[int, float]:
    rows = query(settings, "select flight_id, cast(is_delayed as double) from labels.label_flight__departure_delay "
                           "where is_delayed is not null")
    return dict(rows)


def _loss(y: float, p: float) -> float:
    return float(st.row_log_loss(np.array([y]), np.array([p]))[0])


def test_promoting_a_challenger_publishes_its_pointer(home):
    pointer = read_pointer_file(challenger_path(home, MODEL))
    assert pointer.version == registry.get_aliases(home, MODEL)[registry.CHALLENGER] == 2
    assert json.loads(challenger_path(home, MODEL).read_text())["alias"] == "challenger"


def test_shadow_scores_every_request_off_the_path_and_the_paired_test_reads_the_pairs(home, requests_):
    app = create_app(home, config=ServeConfig(shadow=True))
    with ServerThread(app) as server:
        answers = _post_all(server.url, requests_)
        _wait_for_shadow(app.state.fti.shadow, len(answers))
        metrics = httpx.get(f"{server.url}/metrics").text
    assert {(a["version"], a["variant"]) for a in answers} == {(1, "champion")}
    assert 'variant="shadow"' in metrics and "fti_online_shadow_jobs" in metrics

    log = _log(home)
    answered = {r["prediction_id"]: r for r in log if r["variant"] == "champion"}
    shadows = [r for r in log if r["variant"] == "shadow"]
    assert len(shadows) == len(answers) and all(r["model_version"] == 2 for r in shadows)
    assert {r["shadow_of"] for r in shadows} == {a["prediction_id"] for a in answers} <= set(answered)

    # Independently: the latest pair per flight, with its outcome, gives the mean loss difference.
    outcomes, latest = _outcomes(home), {}
    for s in shadows:
        flight = json.loads(s["entity"])["flight_id"]
        latest[flight] = (answered[s["shadow_of"]]["score"], s["score"])
    diffs = [_loss(outcomes[f], b) - _loss(outcomes[f], a) for f, (a, b) in latest.items() if f in outcomes]
    result = compare(home, MODEL, "shadow")
    assert result.test == PAIRED_TEST and result.result.rows == len(diffs) > 50
    assert result.result.difference == pytest.approx(float(np.mean(diffs)), rel=1e-9, abs=1e-12)
    assert result.verdict in (st.PROMOTE, st.KEEP, st.UNDECIDED) and result.looks


def test_canary_answers_a_stable_share_of_entities_and_is_judged_sequentially(home, requests_):
    app = create_app(home, config=ServeConfig(canary_share=SHARE))
    with ServerThread(app) as server:
        answers = _post_all(server.url, requests_)
    by_flight: dict[int, set] = {}
    for body, answer in zip(requests_ * 2, answers):
        in_canary = entity_fraction(["flight_id"], body) < SHARE
        assert (answer["variant"], answer["version"]) == (("canary", 2) if in_canary else ("champion", 1))
        by_flight.setdefault(body["flight_id"], set()).add(answer["variant"])
    assert all(len(variants) == 1 for variants in by_flight.values())  # sticky
    canaries = sum(v == {"canary"} for v in by_flight.values())
    assert 0.3 * len(by_flight) < canaries < 0.7 * len(by_flight)

    # A canary answer is v2's score of the same request as its shadow score before: the same model, features.
    log = _log(home)
    shadow = {json.loads(r["entity"])["flight_id"]: r["score"] for r in log if r["variant"] == "shadow"}
    for answer, body in zip(answers, requests_ * 2):
        if answer["variant"] == "canary":
            assert answer["score"] == pytest.approx(shadow[body["flight_id"]], rel=1e-12)

    result = compare(home, MODEL, "canary")
    outcomes = _outcomes(home)
    labelled = [f for f in by_flight if f in outcomes]
    assert result.test == SEQUENTIAL_TEST
    assert result.champion.labelled + result.challenger.labelled == len(labelled)
    assert result.challenger.labelled == sum(by_flight[f] == {"canary"} for f in labelled)
    widths = [look.interval.high - look.interval.low for look in result.looks]
    assert all(later <= earlier for earlier, later in zip(widths, widths[1:]))


@pytest.mark.parametrize("failure", ["raises", "stalls"])
def test_a_failing_or_stalled_shadow_changes_no_answer(home, requests_, failure, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    bodies = requests_[:40]
    with ServerThread(create_app(settings)) as server:  # the answers without any challenger
        alone = _post_all(server.url, bodies, rounds=1)
    app = create_app(settings, config=ServeConfig(shadow=True, shadow_queue=4))
    state = app.state.fti
    with ServerThread(app) as server:
        shadow = state.shadow._process
        if failure == "raises":  # the service loaded v2; the shadow process will find its model file broken
            (state.challengers[MODEL].pointer.model_dir / "model.txt").write_text("not a model")
        else:  # the shadow process stops dead: nothing it has queued is scored until it goes on
            os.kill(shadow.pid, signal.SIGSTOP)
        try:
            answers = _post_all(server.url, bodies, rounds=1)
        finally:
            if failure == "stalls":
                os.kill(shadow.pid, signal.SIGCONT)
        # the shadow process runs at idle priority: on a busy machine it may take a while to get the CPU
        deadline = time.monotonic() + 120
        while state.shadow.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
    stats = state.shadow.stats()  # after the process ended: everything it reported
    assert {(a["version"], a["variant"]) for a in answers} == {(1, "champion")}
    assert [a["score"] for a in answers] == [a["score"] for a in alone]
    if failure == "raises":
        assert stats["failed"] > 0 and stats["scored"] == 0 and stats["failed"] + stats["dropped"] == len(bodies)
    else:
        assert stats["dropped"] >= len(bodies) - 4 - 1  # the queue held 4, the process had taken one at most
        assert stats["scored"] + stats["dropped"] == len(bodies)  # the queued ones were scored once it went on


def test_batch_predictions_under_both_aliases_are_compared_pair_by_pair(home):
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        predict_window(home, MODEL, WINDOW, alias=alias)
    result = compare(home, MODEL, "batch")
    (pairs,), = query(home, """
        select count(*) from predictions.flight_delay a
        join predictions.flight_delay__challenger b using (flight_id, scheduled_departure_at)
        join labels.label_flight__departure_delay l using (flight_id)
        where l.is_delayed is not null and a.model_version = 1 and b.model_version = 2""")
    assert result.test == PAIRED_TEST and result.result.rows == pairs > 100
    assert len(result.looks) == 2  # two days of departures
    assert result.champion.roc_auc is not None and result.challenger.log_loss is not None
    assert result.warnings == ()  # scored one after the other: the same features


def test_batch_pairs_scored_far_apart_are_flagged(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    with duckdb.connect(str(settings.warehouse_path)) as con:  # as if the challenger scored the window later
        con.execute("update predictions.flight_delay__challenger set scored_at = scored_at + interval 2 hours")
    (warning,) = compare(settings, MODEL, "batch").warnings
    assert "pairs were scored more than 1:00:00 apart" in warning and "--alias challenger" in warning


def test_compare_command_prints_a_verdict_and_writes_the_report(home):
    fti = Path(sys.executable).with_name("fti")
    done = subprocess.run([str(fti), "models", "compare", MODEL, "--source", "batch"], capture_output=True, text=True,
                          env={**os.environ, "FTI_HOME": str(home.home)}, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "verdict: " in out and "paired t test" in out
    report = home.reports_dir / "compare" / MODEL / "v1-v2-batch"
    assert (report / "difference.png").stat().st_size > 0
    assert "**Verdict:" in (report / "report.md").read_text()


def test_nothing_to_compare_is_a_clear_error(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    settings.prediction_log_path.unlink(missing_ok=True)  # there when the shadow and canary tests ran first
    with pytest.raises(ComparisonError, match="no prediction log"):
        compare(settings, MODEL, "shadow")
    with pytest.raises(ComparisonError, match="not one of"):
        compare(settings, MODEL, "online")


def test_fraud_challenger_compared_on_final_labels(home, tmp_path):
    settings = copy_home(home, tmp_path / "home")
    view = load_catalog(settings).view("card_fraud")
    train_range = TimeRange.of(FRAUD_CONFIG.start.isoformat(), "2012-12-05")
    split = TimeSplit(fractions=(0.6, 0.2, 0.2))
    versions = []
    for seed, leaves in ((1, 7), (2, 3)):
        config = tr.TrainConfig(**{**FAST.as_dict(), "seed": seed, "num_leaves": leaves, "min_data_in_leaf": 20})
        versions.append(registry.register_model(settings, "card_fraud", *fit_for_registry(
            settings, view, train_range, split, config)))
    registry.promote(settings, "card_fraud", versions[0].version, publish=False)
    registry.promote(settings, "card_fraud", versions[1].version, registry.CHALLENGER, publish=False)
    window = TimeRange.of("2012-12-05", "2012-12-11")  # labels final through 10 December
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        predict_window(settings, "card_fraud", window, alias=alias)
    result = compare(settings, "card_fraud")  # no log: the batch scores are found
    print(f"\ncard_fraud v{result.champion.version} vs v{result.challenger.version} ({result.source}): "
          f"log loss {result.champion.log_loss:.5f} vs {result.challenger.log_loss:.5f}, difference "
          f"{result.result.difference:+.5f} [{result.interval.low:+.5f}, {result.interval.high:+.5f}], "
          f"{result.result.rows:,} pairs, verdict {result.verdict}")
    assert result.source == "batch" and result.test == PAIRED_TEST
    assert result.result.rows == result.champion.labelled > 1000 and len(result.looks) == 6
    assert result.champion.labelled == result.challenger.labelled
