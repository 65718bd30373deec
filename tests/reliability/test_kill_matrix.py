"""kill -9 of training, batch inference, online materialization and the service, then the published state.

Each step runs as the real `fti` command in its own process, on a private copy of ``trained_home``, and is
SIGKILLed (its whole process group) at three moments: an observable point of the run (a log line, a file
appearing, a write-ahead log starting to fill) plus a seeded random delay spread over the stretch of work that
follows it, measured on an uninterrupted run. After each kill the published state must be the old one or the
complete new one, never a mix, with nothing left behind that breaks the next run; the step is then re-run
uninterrupted and must come back to exactly what the uninterrupted run produced (row hashes of the published
tables, model file bytes). The service is killed under request load, once while a materialization commits,
and restarted each time: it must answer as an uninterrupted service does, and its prediction log must be
readable, with only complete records.

The kill points of a step run at once (each on its own home); the uninterrupted runs and re-runs run in this
process, through the command's own entry point (`fti.cli.main`), which saves an interpreter start each.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field

import duckdb
import httpx
import pytest
from kill_testing import (
    FLOW_STARTED_LINE,
    TRAIN,
    Command,
    Killed,
    Trigger,
    cli_env,
    copy_home_without_cache,
    fti_command,
    home_files,
    kill_points,
    record,
    relations,
    rows_digest,
    run_cli,
    seeded_delays,
    sqlite_tables,
    wait_until,
    warehouse,
)
from online_testing import ServerThread

from bench.loopback import free_port, wait_for_port
from models_ml.core.settings import Settings

pytestmark = pytest.mark.slow

MODEL = "flight_delay"
SEED = 18


def all_relations(settings: Settings) -> set[str]:
    with warehouse(settings.warehouse_path) as con:
        return {f"{s}.{t}" for s in ("registry", "snapshots", "predictions") for t in relations(con, s)}


def stray(settings: Settings, *expected: set[str]) -> list[str]:
    """Relations of the published schemas that neither the old nor the new state has (a killed run's
    leftovers)."""
    return sorted(all_relations(settings) - set().union(*expected))


# --------------------------------------------------------------------------------------------------
# Training: registry rows, model files and the champion pointer


@dataclass(frozen=True)
class Registry:
    versions: tuple[int, ...]  # registered versions
    complete: tuple[int, ...]  # of those, the ones whose files are all there
    champion: int | None
    pointer: int | None  # the version champion.json serves
    staged: tuple[str, ...]  # other pointer files: a promotion's staged pointer awaiting reconciliation
    model: str | None  # the champion's model.txt
    test_metrics: tuple[int, str] | None
    snapshot: str | None
    unregistered_dirs: tuple[str, ...]  # version folders without a registry row, staging folders
    relations: frozenset[str] = field(default=frozenset())

    def summary(self) -> str:
        text = f"champion v{self.champion}, pointer v{self.pointer}, versions {list(self.versions)}"
        if self.staged:
            text += f", staged pointer {list(self.staged)}"
        if self.unregistered_dirs:
            text += f", folders without a row {list(self.unregistered_dirs)}"
        scratch = sorted(r for r in self.relations if r.startswith("snapshots._building_"))
        if scratch:
            text += f", scratch tables {scratch}"
        return text


def registry_state(settings: Settings) -> Registry:
    folder = settings.models_dir / MODEL
    with warehouse(settings.warehouse_path) as con:
        versions = tuple(v for (v,) in con.execute(
            "select version from registry.model_versions where model_name = ? order by 1", [MODEL]).fetchall())
        aliases = dict(con.execute("select alias, version from registry.model_aliases where model_name = ?",
                                   [MODEL]).fetchall())
        champion = aliases.get("champion")
        metrics = rows_digest(con, "select metric, value from registry.model_metrics where model_name = ? and "
                                   "version = ? and dataset = 'test'", [MODEL, champion]) if champion else None
        snapshot = con.execute("select snapshot_id from registry.model_versions where model_name = ? and "
                               "version = ?", [MODEL, champion]).fetchone()[0] if champion else None
        missing_snapshots = con.execute(
            "select count(*) from snapshots.snapshot_registry r where not exists (select 1 from "
            "information_schema.tables t where t.table_schema = 'snapshots' and t.table_name = r.snapshot_id)"
        ).fetchone()[0]
    assert missing_snapshots == 0, "a registered snapshot has no table"
    required = ("model.txt", "model_spec.json", "evaluation.json")
    complete = tuple(v for v in versions if all((folder / str(v) / name).is_file() for name in required))
    pointer_file = folder / "champion.json"
    pointer = json.loads(pointer_file.read_text())["version"] if pointer_file.exists() else None
    model = folder / str(champion) / "model.txt"
    return Registry(
        versions=versions, complete=complete, champion=champion, pointer=pointer,
        staged=tuple(sorted(p.name for p in folder.glob("*.json") if p.name != "champion.json")),
        model=hashlib.md5(model.read_bytes()).hexdigest() if champion and model.exists() else None,
        test_metrics=metrics, snapshot=snapshot,
        unregistered_dirs=tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()
                                       and not (p.name.isdigit() and int(p.name) in versions))),
        relations=frozenset(all_relations(settings)),
    )


@pytest.fixture(scope="module")
def training_runs(trained_home, tmp_path_factory):
    """The home before training, and after one uninterrupted `fti train` (with the seconds of its stages)."""
    before = registry_state(trained_home)
    home = copy_home_without_cache(trained_home.home, tmp_path_factory.mktemp("train-baseline") / "home")
    code, output = run_cli(home.home, *TRAIN, "--json")
    assert code == 0, output
    seconds = json.loads(output[output.index("{"):])["seconds"]
    return before, registry_state(home), seconds


def test_killed_training_leaves_the_old_or_the_new_champion(training_runs, trained_home, tmp_path):
    before, after, seconds = training_runs
    assert (before.champion, before.pointer, after.champion, after.pointer) == (1, 1, 2, 2)
    snapshot, register = seeded_delays(SEED, [seconds["snapshot"] / 2, seconds["register"]])
    points = [
        # The snapshot's join committed into a scratch table (the first write of a run), not yet registered.
        Trigger("snapshot written", glob="warehouse.duckdb.wal", delay=snapshot),
        Trigger("registering", glob=f"models/{MODEL}/.staging-*", delay=register),
        Trigger("promoting", line=rf"registered {MODEL} v\d+", delay=seeded_delays(SEED + 1, [0.3])[0]),
    ]
    items = request_items(trained_home)

    for home, killed in kill_points(trained_home.home, tmp_path, points, TRAIN, cli_env()):
        assert killed.killed, f"the run ended before its kill point {killed.trigger}:\n{killed.output}"
        state = registry_state(home)
        assert state.champion in (before.champion, after.champion), (state, killed.output)
        assert state.complete == state.versions, f"a registered version lacks its files: {state}"
        assert state.model in (before.model, after.model)
        # The pointer serves the committed champion, or a staged pointer is left for the service's start-up
        # (or `fti doctor`) to reconcile: never a silent mix.
        assert state.pointer == state.champion or state.staged, f"pointer and registry disagree: {state}"
        after_kill = state.summary()
        assert served(home, items)[0] == {state.champion}, "a service started now serves another version"
        after_kill += f"; a service started now serves v{state.champion}"

        code, output = run_cli(home.home, *TRAIN)
        assert code == 0, output
        rerun = registry_state(home)
        assert (rerun.model, rerun.test_metrics, rerun.snapshot) == (after.model, after.test_metrics, after.snapshot)
        assert rerun.pointer == rerun.champion and not rerun.staged, rerun
        assert rerun.complete == rerun.versions
        record("training", killed, after_kill, "champion's model, test metrics and snapshot as uninterrupted; "
                                               + rerun.summary())


def test_a_rerun_after_a_killed_training_leaves_no_scratch_behind(trained_home, tmp_path):
    """What the two kills leave (the matrix shows both, with these names), made directly so the check does
    not depend on a kill's timing: a scratch table holding a joined snapshot and a staging folder holding a
    version's files. A re-run holds the home's lock, so no live run can own them."""
    home = copy_home_without_cache(trained_home.home, tmp_path / "home")
    shutil.copytree(home.models_dir / MODEL / "1", home.models_dir / MODEL / ".staging-0123456789ab")
    with duckdb.connect(str(home.warehouse_path)) as con:
        (snapshot,) = con.execute("select snapshot_id from snapshots.snapshot_registry").fetchone()
        con.execute(f'create table snapshots._building_0123456789ab as select * from snapshots."{snapshot}"')
    code, output = run_cli(home.home, *TRAIN)
    assert code == 0, output
    state = registry_state(home)
    assert state.champion == 2
    assert not state.unregistered_dirs and not any("._building_" in r for r in state.relations), state.summary()


# --------------------------------------------------------------------------------------------------
# Batch inference: the window's rows of predictions.flight_delay

PREDICT = ("predict", "--day", "2013-01-08", "--days", "2")
WINDOW = ("2013-01-08 00:00:00+00", "2013-01-10 00:00:00+00")
IN_WINDOW = "scheduled_departure_at >= ?::timestamptz and scheduled_departure_at < ?::timestamptz"


@dataclass(frozen=True)
class Predictions:
    scorings: tuple[tuple[str, int], ...]  # (scored_at, rows) of the window's rows
    window: tuple[int, str]  # the window's rows without scored_at
    outside: tuple[int, str]  # every other row, as is
    relations: frozenset[str]

    def summary(self, before: Predictions) -> str:
        if not self.scorings:
            return "window empty"
        (scored_at, rows), = self.scorings
        which = "the earlier scoring" if self.scorings == before.scorings else "a new complete scoring"
        return f"window holds {which} ({rows:,} rows, one scored_at), other days unchanged"


def predictions_state(settings: Settings) -> Predictions:
    with warehouse(settings.warehouse_path) as con:
        table = "predictions.flight_delay"
        scorings = tuple((str(s), n) for s, n in con.execute(
            f"select scored_at, count(*) from {table} where {IN_WINDOW} group by 1 order by 1", WINDOW).fetchall())
        window = rows_digest(con, f"select * exclude (scored_at) from {table} where {IN_WINDOW}", WINDOW)
        outside = rows_digest(con, f"select * from {table} where not ({IN_WINDOW})", WINDOW)
    return Predictions(scorings, window, outside, frozenset(all_relations(settings)))


@pytest.fixture(scope="module")
def prediction_runs(trained_home, tmp_path_factory):
    """The home's predictions before and after one uninterrupted `fti predict` of the window, and its seconds."""
    home = copy_home_without_cache(trained_home.home, tmp_path_factory.mktemp("predict-baseline") / "home")
    started = time.monotonic()
    code, output = run_cli(home.home, *PREDICT)
    assert code == 0, output
    seconds = time.monotonic() - started
    return predictions_state(trained_home), predictions_state(home), seconds, home_files(home.home)


def test_killed_batch_inference_leaves_the_old_or_the_new_window(prediction_runs, trained_home, tmp_path):
    before, after, seconds, files = prediction_runs
    assert len(before.scorings) == 1 and len(after.scorings) == 1 and before.scorings != after.scorings
    assert before.window[0] == after.window[0] > 1000
    flow, scoring = seeded_delays(SEED, [seconds, 0.3])
    points = [
        Trigger("loading features", line=FLOW_STARTED_LINE, delay=flow),
        Trigger("scoring and writing", line=r"load-features-\w+' - Finished", delay=scoring),
        Trigger("committing the write", glob="warehouse.duckdb.wal", delay=seeded_delays(SEED + 1, [0.01])[0]),
    ]
    for home, killed in kill_points(trained_home.home, tmp_path, points, PREDICT, cli_env()):
        assert killed.killed, f"the run ended before its kill point {killed.trigger}:\n{killed.output}"
        state = predictions_state(home)
        assert len(state.scorings) == 1, f"the window mixes scorings: {state.scorings}"
        assert state.window == (before.window if state.scorings == before.scorings else after.window), state
        assert state.outside == before.outside, "a kill changed rows outside the window"
        assert not stray(home, before.relations, after.relations)
        after_kill = state.summary(before)

        code, output = run_cli(home.home, *PREDICT)
        assert code == 0, output
        rerun = predictions_state(home)
        assert (rerun.window, rerun.outside) == (after.window, before.outside)
        assert len(rerun.scorings) == 1 and rerun.scorings != before.scorings
        assert home_files(home.home) == files
        record("batch", killed, after_kill, "window rows equal the uninterrupted run's (but scored_at); "
                                            "other days unchanged")


# --------------------------------------------------------------------------------------------------
# Online materialization: the online store's rows and freshness, per group

MATERIALIZE = ("online", "materialize", "--store", "sqlite")
VOLATILE = {"fti_groups": {"materialized_at_us", "rows_written"}}  # when and how much, not what


def store_state(settings: Settings) -> dict[str, tuple[int, str]]:
    return sqlite_tables(settings.online_store_path, VOLATILE)


def classify(state: dict, before: dict, after: dict) -> str:
    """'old' or 'new' when every table that a refresh changes is as before or as after it; else 'mixed'."""
    changing = [t for t in after if before.get(t) != after[t]]
    if all(state.get(t) == before.get(t) for t in changing):
        return "old"
    if all(state.get(t) == after[t] for t in changing):
        return "new"
    return "mixed: " + ", ".join(t for t in changing if state.get(t) not in (before.get(t), after[t]))


def request_items(settings: Settings, n: int = 20) -> list[dict]:
    """Real flights from the end of the slice, with every field the published champion's requests take."""
    from models_ml.training.champion_pointer import read_pointer

    pointer = read_pointer(settings, MODEL)
    names = [f.name for f in pointer.fields]
    label = pointer.view.label
    with warehouse(settings.warehouse_path) as con:
        rows = con.execute(f"select {', '.join(names)} from {label.qualified_relation} where {label.spine_time} >= "
                           f"timestamptz '2013-01-10 12:00:00+00' order by {label.entity[0]} limit ?", [n]).fetchall()
    return [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in zip(names, row)} for row in rows]


def served(settings: Settings, items: list[dict]) -> tuple[set[int], list[float]]:
    """The versions and scores a freshly started service (the app in this process, no prediction log) gives
    ``items``; starting, it finishes or undoes an interrupted promotion, as `fti serve` does."""
    from models_ml.inference.online.serving.app import create_app

    with ServerThread(create_app(settings, log_predictions=False)) as server:
        response = httpx.post(f"{server.url}/predict/{MODEL}/batch", json=items, timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return {p["version"] for p in predictions}, [p["score"] for p in predictions]


def served_scores(settings: Settings, items: list[dict]) -> list[float]:
    return served(settings, items)[1]


@pytest.fixture(scope="module")
def materialization_runs(trained_home, tmp_path_factory):
    """The store before and after one uninterrupted `fti online materialize`, its seconds and served scores."""
    home = copy_home_without_cache(trained_home.home, tmp_path_factory.mktemp("materialize-baseline") / "home")
    items = request_items(trained_home)
    started = time.monotonic()
    code, output = run_cli(home.home, *MATERIALIZE)
    assert code == 0, output
    seconds = time.monotonic() - started
    return (store_state(trained_home), store_state(home), seconds, items, served_scores(home, items),
            home_files(home.home))


def test_killed_materialization_leaves_the_old_or_the_new_store(materialization_runs, trained_home, tmp_path):
    before, after, seconds, items, scores, files = materialization_runs
    assert classify(after, before, {}) == "old" and classify(before, before, after) == "old"
    assert sum(before[t] != after[t] for t in after) >= 4  # the refresh changes several groups
    assert served_scores(trained_home, items) != scores  # and what is served
    extract, commit, publish = seeded_delays(SEED, [seconds, 0.01, 0.5])
    points = [
        Trigger("reading the warehouse", line=FLOW_STARTED_LINE, delay=extract),
        Trigger("committing the store", glob="online/online_store.sqlite-wal", delay=commit),
        Trigger("publishing champions", line=r"materialize-online-store-\w+' - Finished", delay=publish),
    ]
    for home, killed in kill_points(trained_home.home, tmp_path, points, MATERIALIZE, cli_env()):
        assert killed.killed, f"the run ended before its kill point {killed.trigger}:\n{killed.output}"
        state = classify(store_state(home), before, after)
        assert state in ("old", "new"), state
        assert len(served_scores(home, items)) == len(items)  # the store still serves
        after_kill = f"store {state} in every group; serves"

        code, output = run_cli(home.home, *MATERIALIZE)
        assert code == 0, output
        assert store_state(home) == after
        assert served_scores(home, items) == scores
        assert home_files(home.home) == files
        record("materialize", killed, after_kill, "store equals the uninterrupted run's; same served scores")


# --------------------------------------------------------------------------------------------------
# The service: kill -9 under load (once while a materialization commits), restart, serve, read the log


@dataclass
class Load:
    """Clients posting single and batch predictions until stopped; what came back."""

    url: str
    items: list[dict]
    clients: int = 3
    answered: int = 0  # predictions answered 200 (a batch counts its items)
    failures: list[str] = field(default_factory=list)  # non-200 answers
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = index
            while not self._stop.is_set():
                batch = self.items[i % len(self.items):][:5] if i % 2 else [self.items[i % len(self.items)]]
                try:
                    response = (client.post(f"/predict/{MODEL}/batch", json=batch) if len(batch) > 1
                                else client.post(f"/predict/{MODEL}", json=batch[0]))
                except httpx.TransportError:  # the server was killed: stop, as a client would give up
                    return
                with self._lock:
                    if response.status_code == 200:
                        self.answered += len(batch)
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                i += self.clients

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def prediction_log(settings: Settings) -> int:
    """Rows of the prediction log after checking each is complete (every column set, JSON that parses)."""
    import sqlite3

    from models_ml.inference.online.prediction_log import COLUMNS, read_prediction_log

    path = settings.prediction_log_path
    sqlite_tables(path)  # integrity_check
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute(f"select {', '.join(COLUMNS)} from prediction_log").fetchall()
    finally:
        con.close()
    for row in rows:
        record_ = dict(zip(COLUMNS, row))
        # every column is set, but shadow_of, which only a shadow row carries
        assert all(v is not None for k, v in record_.items() if k != "shadow_of"), f"a partial record: {record_}"
        for name in ("entity", "missing_groups", "feature_age_seconds", "features", "request"):
            json.loads(record_[name])
        assert record_["model_name"] == MODEL and 0.0 <= record_["score"] <= 1.0
    assert read_prediction_log(path).num_rows >= len(rows)  # a live service may append between the reads
    return len(rows)


class Service:
    """`fti serve` on a free port, started (again) on demand."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings, self.env, self.port = settings, env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command: Command | None = None

    def start(self) -> Service:
        self.command = fti_command(self.settings.home, "serve", "--port", str(self.port), "--store", "sqlite",
                                   env=self.env).start()
        wait_for_port(self.port, timeout=120)
        wait_until(lambda: httpx.get(f"{self.url}/health").json()["status"] == "ok", 60, "/health ok")
        return self

    def scores(self, items: list[dict]) -> list[float]:
        response = httpx.post(f"{self.url}/predict/{MODEL}/batch", json=items, timeout=30)
        assert response.status_code == 200, response.text
        return [p["score"] for p in response.json()["predictions"]]


def test_killed_service_restarts_serving_and_its_log_stays_whole(materialization_runs, trained_home, tmp_path):
    _, refreshed, _, items, _, _ = materialization_runs
    home = copy_home_without_cache(trained_home.home, tmp_path / "home")
    env = cli_env()
    service = Service(home, env).start()
    answered = 0

    def restart_and_check(trigger: Trigger, load: Load, during: str) -> None:
        nonlocal answered
        assert not load.failures, f"{trigger.label}: {load.failures[:3]}"
        answered += load.answered
        logged = prediction_log(home)
        assert logged <= answered
        service.start()
        assert service.scores(items) == served_scores(home, items)
        answered += len(items)
        wait_until(lambda: prediction_log(home) >= logged + len(items), 30, "the restarted service's records")
        record("service", Killed(trigger, True, -9, ""),
               f"{load.answered:,} predictions answered before the kill, 0 errors{during}; log readable, "
               f"{logged:,} complete records in all (<= {answered - len(items):,} answered)",
               "restarted: /health ok, scores equal an uninterrupted service's, new records logged")

    under_load, after_refresh = seeded_delays(SEED, [1.5, 1.0])
    try:
        trigger = Trigger("under load", delay=0.5 + under_load)
        with Load(service.url, items) as load:
            time.sleep(trigger.delay)
            service.command.kill()
        restart_and_check(trigger, load, "")

        # While a materialization commits: killed once the store's write-ahead log starts filling.
        trigger = Trigger("materialization commits", glob="online/online_store.sqlite-wal")
        with Load(service.url, items) as load:
            refresh = fti_command(home.home, *MATERIALIZE, env=env)
            before = {p: p.stat().st_size for p in home.home.glob(trigger.glob)}
            refresh.start()
            assert refresh.wait_for_file(home.home, trigger.glob, before), refresh.output()
            service.command.kill()
            assert refresh.wait() == 0, refresh.output()
        assert store_state(home) == refreshed
        restart_and_check(trigger, load, "; the materialization completed")

        trigger = Trigger("after the refresh", delay=after_refresh)
        with Load(service.url, items) as load:
            time.sleep(trigger.delay)
            service.command.kill()
        restart_and_check(trigger, load, "")
    finally:
        if service.command is not None:
            service.command.kill()
