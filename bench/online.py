"""Benchmark online serving: the embedded store's candidates, then the inference service under open-loop load.

Part 1, ``stores``: lookup latency of one feature-view read (5 groups x 1 entity, 10 float features each,
100,000 entities per group, random keys) for each candidate store: SQLite in WAL mode (the embedded
default), an in-process dict snapshot loaded from a pickle file (swapped whole on refresh), LMDB (when the
``lmdb`` package is installed) and Redis (when ``redis-server`` is). Then what a reader sees while a
refresh of 50,000 entities commits from another process: its p99/max lookup latency during the refresh,
and whether any lookup saw a torn refresh (values of two refresh generations in one read).

Part 2, ``service``: the real service (``fti serve``, as ``python -m fti.cli serve``) in a separate process on
loopback, once with the SQLite store and once with Redis. An open-loop generator (``bench/open_loop.py``:
raw HTTP/1.1 on keep-alive connections, a sender and a receiver thread) sends single-transaction requests
on a fixed schedule; each latency is measured from the request's *scheduled* send time, so queueing in the
service (or the generator) is not hidden.
First a baseline (the same requests to an unknown model: HTTP + routing + the 404, no store, no model),
then 200 requests/s for 30 s and 2,000 requests/s for 30 s (``--rate``, ``--high``), then rising rates (10 s
each) until p99 reaches 20 ms or a request fails: the highest rate that held is reported. Each row carries
the load average at its end (the machine is shared). Requests are real spine rows of the model's label
table (the newest ones, with their spine time, so features are within TTL). The SQLite store is run with
each worker count of ``--workers`` (``fti serve --workers N``, default 1 then 2), and with ``--before
GIT_REF`` first with that commit's service (its files by ``git archive``, one process), so a before/after
table comes from one run on one home; Redis with the last worker count.

    .venv/bin/python bench/online.py [--home FTI_HOME] [--model flight_delay] [stores|service|shadow|all]
    .venv/bin/python bench/online.py service --before c89f1c8 --stores sqlite

Part 3, ``shadow``: the same service and load with the model's challenger in shadow (``FTI_SERVE_SHADOW=1``)
and without, alternating, ``--repeats`` runs each: the p99 of all requests of each mode pooled, and their
ratio (budget: within 10 %), beside the on/off ratio of each pair of runs (a run disturbed by another
process shows there as an outlier pair).
A home without a challenger gets one from the training flow (not promoted).

The home must hold a built warehouse with a champion of ``--model`` (``make demo``); the bench
materializes the online store and publishes the champion itself. Targets: p99 <= 5 ms at 200 requests/s,
at least 2,000 requests/s with p99 < 20 ms, zero errors.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import loopback  # noqa: E402
from bench._machine import describe_machine  # noqa: E402
from bench.open_loop import HEADER, open_loop, pct  # noqa: E402

UTC = dt.timezone.utc
GROUPS, ENTITIES, FEATURES = 5, 100_000, 10
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def redis_server():
    """A throwaway redis-server on a free loopback port (None when the binary is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="fti-bench-redis-") as directory:
        with loopback.redis_server(binary, Path(directory)) as url:
            yield url


# ==================================================================================================
# Part 1: store candidates


def _schemas():
    from models_ml.inference.online.store import GroupSchema

    return [GroupSchema(f"fg_bench_{g}", 1, ("key",), tuple((f"f{j}", "float") for j in range(FEATURES)), None)
            for g in range(GROUPS)]


def _refresh(schema, generation: int, keys: range):
    import pyarrow as pa

    from models_ml.inference.online.materialize import to_refresh
    from models_ml.inference.online.store import GroupRefresh, to_us

    n = len(keys)
    columns = {"key": [f"k{i}" for i in keys],
               "__event_at": pa.array([T0 + dt.timedelta(minutes=generation)] * n, pa.timestamp("us", tz="UTC")),
               "__created_at": pa.array([T0 + dt.timedelta(minutes=generation)] * n, pa.timestamp("us", tz="UTC"))}
    for j in range(FEATURES):
        columns[f"f{j}"] = pa.array([float(generation)] * n)
    moment = to_us(T0 + dt.timedelta(minutes=generation))
    return GroupRefresh(schema, to_refresh(pa.table(columns), schema), moment, moment, n)


def _open(kind: str, where: str):
    if kind == "sqlite":
        from models_ml.inference.online.stores.sqlite import SqliteStore

        return SqliteStore(Path(where))
    from models_ml.inference.online.stores.redis import RedisStore

    return RedisStore(where, prefix="bench")


def _refresh_process(kind: str, where: str, generation: int, n: int, done, applying) -> None:
    store = _open(kind, where)
    refreshes = [_refresh(s, generation, range(n)) for s in _schemas()]
    applying.set()  # imports and data built: from here on the reader's lookups count as "during refresh"
    started = time.perf_counter()
    store.apply(refreshes, T0 + dt.timedelta(minutes=generation))
    done.value = time.perf_counter() - started


def _lookups(read, n: int) -> list[float]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        key = f"k{rng.randrange(ENTITIES)}"
        started = time.perf_counter()
        read(key)
        out.append((time.perf_counter() - started) * 1e6)
    return out


def bench_store(kind: str, where: str, lookups: int) -> dict:
    """Lookup latency of a real store, then during a 50,000-entity refresh from another process."""
    from models_ml.inference.online.store import RowsRequest

    store = _open(kind, where)
    schemas = _schemas()
    started = time.perf_counter()
    store.apply([_refresh(s, 0, range(ENTITIES)) for s in schemas], T0)
    load_seconds = time.perf_counter() - started
    names = [f"f{j}" for j in range(FEATURES)]

    def read(key: str):
        return store.read_rows([RowsRequest(s.id, [key], names) for s in schemas])

    _lookups(read, 500)
    idle = _lookups(read, lookups)
    # During a refresh committed by another process: lookups keep going; every lookup must see one generation.
    refresh_rows = 50_000
    context = multiprocessing.get_context("spawn")
    done, applying = context.Value("d", -1.0), context.Event()
    writer = context.Process(target=_refresh_process, args=(kind, where, 1, refresh_rows, done, applying))
    during, torn = [], 0
    rng = random.Random(11)
    writer.start()
    applying.wait(120)
    while writer.is_alive():
        key = f"k{rng.randrange(refresh_rows)}"
        t = time.perf_counter()
        rows = read(key)
        during.append((time.perf_counter() - t) * 1e6)
        if len({r[0].values["f0"] for r in rows}) != 1:
            torn += 1
    writer.join()
    store.close()
    return {"store": kind, "p50_us": pct(idle, 50), "p99_us": pct(idle, 99), "load_s": load_seconds,
            "refresh_s": done.value, "during_p99_us": pct(during, 99), "during_max_us": max(during, default=0),
            "during_lookups": len(during), "torn": torn}


def bench_dict_snapshot(directory: Path, lookups: int) -> dict:
    """The in-process candidate: every group as a dict in a pickle file, loaded whole, swapped on refresh."""
    names = [f"f{j}" for j in range(FEATURES)]

    def snapshot(generation: int) -> dict:
        value = tuple([float(generation)] * FEATURES)
        return {f"fg_bench_{g}:v1": {f"k{i}": (T0, value) for i in range(ENTITIES)} for g in range(GROUPS)}

    path = directory / "snapshot.pickle"
    started = time.perf_counter()
    with open(path, "wb") as handle:
        pickle.dump(snapshot(0), handle, protocol=pickle.HIGHEST_PROTOCOL)
    write_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    load_seconds = time.perf_counter() - started
    groups = list(data)

    def read(key: str):
        out = []
        for g in groups:
            found = data[g].get(key)
            out.append(None if found is None else (found[0], dict(zip(names, found[1]))))
        return out

    _lookups(read, 500)
    idle = _lookups(read, lookups)
    return {"store": "dict snapshot (pickle)", "p50_us": pct(idle, 50), "p99_us": pct(idle, 99),
            "load_s": write_seconds + load_seconds,
            "refresh_s": write_seconds + load_seconds,  # any change rewrites and reloads the whole snapshot
            "during_p99_us": float("nan"), "during_max_us": float("nan"), "during_lookups": 0, "torn": 0}


def bench_lmdb(directory: Path, lookups: int) -> dict | None:
    try:
        import lmdb
    except ImportError:
        return None
    names = [f"f{j}" for j in range(FEATURES)]
    env = lmdb.open(str(directory / "lmdb"), map_size=4 << 30, max_dbs=GROUPS + 1)
    dbs = [env.open_db(f"fg_bench_{g}:v1".encode()) for g in range(GROUPS)]
    started = time.perf_counter()
    value = pickle.dumps((0, tuple([0.0] * FEATURES)))
    with env.begin(write=True) as txn:
        for db in dbs:
            for i in range(ENTITIES):
                txn.put(f"k{i}".encode(), value, db=db)
    load_seconds = time.perf_counter() - started

    def read(key: str):
        encoded = key.encode()
        with env.begin() as txn:  # one snapshot for all groups
            out = []
            for db in dbs:
                raw = txn.get(encoded, db=db)
                found = pickle.loads(raw) if raw is not None else None
                out.append(None if found is None else (found[0], dict(zip(names, found[1]))))
        return out

    _lookups(read, 500)
    idle = _lookups(read, lookups)
    env.close()
    return {"store": "lmdb", "p50_us": pct(idle, 50), "p99_us": pct(idle, 99), "load_s": load_seconds,
            "refresh_s": float("nan"), "during_p99_us": float("nan"), "during_max_us": float("nan"),
            "during_lookups": 0, "torn": 0}


def run_stores(lookups: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="fti-bench-stores-") as tmp:
        directory = Path(tmp)
        results.append(bench_store("sqlite", str(directory / "online_store.sqlite"), lookups))
        results.append(bench_dict_snapshot(directory, lookups))
        found = bench_lmdb(directory, lookups)
        if found:
            results.append(found)
        with redis_server() as url:
            if url:
                results.append(bench_store("redis", url, lookups))
    print(f"\n## Store candidates: one feature-view lookup ({GROUPS} groups x 1 entity, {FEATURES} float features, "
          f"{ENTITIES:,} entities per group), {lookups:,} random lookups in one process\n")
    print("| store | lookup p50 (us) | lookup p99 (us) | initial load (s) | 50k-entity refresh (s) "
          "| p99 / max during refresh (us) | lookups during refresh | torn reads |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        during = "-" if r["during_lookups"] == 0 else f"{r['during_p99_us']:.0f} / {r['during_max_us']:.0f}"
        refresh = "-" if r["refresh_s"] != r["refresh_s"] else f"{r['refresh_s']:.2f}"
        print(f"| {r['store']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['load_s']:.2f} | {refresh} | {during} "
              f"| {r['during_lookups']:,} | {r['torn']} |")
    print("\n(dict snapshot: a refresh of any size rewrites and reloads the whole file, in every service process. "
          "redis: the refresh writes 5 x 50,000 entities in transactions of 2,000 (max_transaction_rows), so a "
          "lookup spanning two of them can see both generations: see models_ml/inference/online/stores/redis.py.)")
    return results


# ==================================================================================================
# Part 2: the service under open-loop load


def spine_bodies(settings, model: str, n: int = 2000) -> list[bytes]:
    """The newest spine rows of the model's label table, as request bodies (only the published fields)."""
    from models_ml.offline.store import opened
    from models_ml.training.champion_pointer import read_pointer

    pointer = read_pointer(settings, model)
    label = pointer.view.label
    names = [f.name for f in pointer.fields]
    required = [f.name for f in pointer.fields if f.required]
    columns = ", ".join(f'"{c}"' for c in names)
    not_null = " and ".join(f'"{c}" is not null' for c in required)
    with opened(settings, read_only=True) as warehouse:
        rows = warehouse.execute(f'select {columns} from "{label.schema}"."{label.relation}" where {not_null} '
                                 f'order by "{label.spine_time}" desc limit {n}')
    bodies = []
    for row in rows:
        item = {k: (v.astimezone(UTC).isoformat() if isinstance(v, dt.datetime) else v) for k, v in zip(names, row)}
        bodies.append(json.dumps(item).encode())
    return bodies


@contextlib.contextmanager
def service(settings, env_extra: dict, model: str, *, source: Path = ROOT, workers: int = 1):
    """``fti serve`` of the code under ``source`` (this checkout, or an older commit's files: the before of a
    before/after run) in a process of its own; yields its port once every worker answers.

    Each service logs its predictions to a new, empty file (``FTI_PREDICTION_LOG``), removed afterwards: the
    benchmark's requests stay out of the home's own log (which monitoring reads), and every run starts from
    the same log, not from one grown by the runs before it."""
    port = loopback.free_port()
    with tempfile.TemporaryDirectory(prefix="fti-bench-log-") as log_dir:
        env = {**os.environ, "FTI_HOME": str(settings.home), "PYTHONPATH": str(source),
               "FTI_PREDICTION_LOG": str(Path(log_dir) / "prediction_log.sqlite"), **env_extra}
        command = [sys.executable, "-m", "fti.cli", "serve", "--port", str(port), "--model", model]
        if workers > 1:
            command += ["--workers", str(workers)]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, cwd=source)
        try:
            loopback.wait_for_port(port, 120)
            if workers > 1:
                wait_for_workers(port, workers)
            yield port
        finally:
            loopback.stop(process, 30)


def health_details(port: int, timeout: float | None = None) -> dict:
    """The service's ``/health/details`` on a new connection."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/details", timeout=timeout) as response:
        return json.load(response)


def wait_for_workers(port: int, workers: int, timeout: float = 120.0) -> None:
    """Until ``workers`` distinct processes have answered ``/health/details`` on fresh connections: a
    connection goes to a worker already listening, so a load run that started sooner would leave the later
    workers without connections."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {workers} workers answered on port {port}")
        with contextlib.suppress(OSError):
            seen.add(health_details(port, timeout=2)["process"]["pid"])
        time.sleep(0.05)


@contextlib.contextmanager
def source_of(ref: str | None):
    """The project's files at git ``ref`` in a temporary directory (``git archive``: the checkout is not
    touched), or this checkout when ``ref`` is None."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="fti-bench-before-") as directory:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
        yield Path(directory)


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def load_test(port: int, model: str, bodies: list[bytes], rate: float, seconds: float,
              steps: list[float], step_seconds: float, label: str, high: float | None = None) -> list[str]:
    """Rows of the table: the 404 baseline, ``rate`` for ``seconds``, ``high`` (if given) for ``seconds``,
    then ``steps`` until p99 reaches 20 ms or a request fails; each with the load average at its end."""
    rows = []
    warm = open_loop(port, f"/predict/{model}", bodies, 100, 3)
    assert warm.errors == 0, f"warm-up failed: {warm.statuses}"
    baseline = open_loop(port, "/predict/__baseline__", bodies, rate, 10, expect=404)
    rows.append(baseline.row(f"{label}: baseline (unknown model, 404)") + f" {_load()} |")
    main = open_loop(port, f"/predict/{model}", bodies, rate, seconds)
    rows.append(main.row(f"{label}: predict") + f" {_load()} |")
    if high is not None:
        result = open_loop(port, f"/predict/{model}", bodies, high, seconds)
        ok = result.errors == 0 and pct(result.latencies_ms, 99) < 20
        rows.append(result.row(f"{label}: predict{'' if ok else ' (p99 >= 20 ms or errors)'}") + f" {_load()} |")
    ratio = pct(main.latencies_ms, 50) / pct(baseline.latencies_ms, 50)
    held = None
    for step in steps:
        result = open_loop(port, f"/predict/{model}", bodies, step, step_seconds)
        ok = result.errors == 0 and pct(result.latencies_ms, 99) < 20
        rows.append(result.row(f"{label}: step{'' if ok else ' (p99 >= 20 ms or errors)'}") + f" {_load()} |")
        if not ok:
            break
        held = step
    rows.append(f"| {label}: highest rate with p99 < 20 ms and no error | {held or 0:,.0f} | | | | | | | | |")
    rows.append(f"| {label}: predict p50 / baseline p50 | {ratio:.2f}x | | | | | | | | |")
    return rows


# the open-loop table with the load average (1, 5, 15 min) at the end of each run: the machine is shared
LOADED_HEADER = HEADER.replace("generator late p99 (ms) |", "generator late p99 (ms) | load average |") + "---|"


def run_service(settings, model: str, rate: float, seconds: float, steps: list[float], step_seconds: float,
                high: float | None, workers: list[int], before: str | None, stores: list[str]) -> None:
    """The SQLite store: the code at git ``before`` (one process, as it was), then this checkout with each
    worker count in ``workers``, one after the other on the same home; then Redis with the last count."""
    from models_ml.inference.online.materialize import refresh_online_store
    from models_ml.training.registry import publish_champion

    pointer = publish_champion(settings, model)
    print(f"\n## Service: {model} v{pointer.version} (feature view {pointer.view.name} v{pointer.view.version}, "
          f"{len(pointer.view.features)} feature groups, {len(pointer.fields)} request fields)\n")
    bodies = spine_bodies(settings, model)
    rows = []
    runs = ([(f"sqlite, before ({before}, 1 process)", before, 1)] if before else []) + [
        (f"sqlite, {n} worker{'s' if n > 1 else ''}", None, n) for n in workers]
    if "sqlite" in stores:
        refresh_online_store(settings, "sqlite")
        for label, ref, n in runs:
            with source_of(ref) as source, service(settings, {"FTI_ONLINE_STORE": "sqlite"}, model, source=source,
                                                   workers=n) as port:
                rows += load_test(port, model, bodies, rate, seconds, steps, step_seconds, label, high)
    if "redis" in stores:
        with redis_server() as url:
            if url is None:
                rows.append("| redis: skipped (redis-server not installed) | | | | | | | | | |")
            else:
                refresh_online_store(settings.with_online_store("redis", url=url))
                n = workers[-1]
                with service(settings, {"FTI_ONLINE_STORE": "redis", "FTI_REDIS_URL": url}, model,
                             workers=n) as port:
                    rows += load_test(port, model, bodies, rate, seconds, steps, step_seconds,
                                      f"redis, {n} worker{'s' if n > 1 else ''}", high)
    print(f"Open loop, latency from the scheduled send time; {rate:.0f}"
          f"{f' and {high:.0f}' if high else ''} requests/s for {seconds:.0f} s, then steps of "
          f"{step_seconds:.0f} s. Load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    print(LOADED_HEADER)
    for row in rows:
        print(row)


def _challenger(settings, model: str) -> int:
    """The model's challenger version; without one, train one (the training flow, not promoted)."""
    from models_ml.training import registry

    aliases = registry.get_aliases(settings, model)
    if registry.CHALLENGER in aliases and aliases[registry.CHALLENGER] != aliases.get(registry.CHAMPION):
        registry.publish_challenger(settings, model)
        return aliases[registry.CHALLENGER]
    from flows.training_pipeline import training

    view = registry.resolve(settings, model).feature_view
    summary = training(view=view, home=str(settings.home), promote=False, overrides={"seed": 7})
    return int(summary["version"])


def wait_for_shadow_scores(port: int, timeout: float = 120.0) -> None:
    """Until the shadow process has scored the warm-up's requests: the measured run is shadow's steady state,
    not its start (loading the challenger), which a long-running service pays once."""
    deadline = time.monotonic() + timeout
    while True:
        shadow = health_details(port)["variants"]["shadow_queue"] or {}
        if shadow.get("scored", 0) > 0 and shadow.get("pending", 1) == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the shadow process scored nothing within {timeout:.0f} s: {shadow}")
        time.sleep(0.2)


def run_shadow(settings, model: str, rate: float, seconds: float, repeats: int) -> None:
    """The same load with the challenger in shadow and without, alternating, ``repeats`` times each."""
    from models_ml.inference.online.materialize import refresh_online_store
    from models_ml.training.registry import publish_champion

    pointer = publish_champion(settings, model)
    challenger = _challenger(settings, model)
    refresh_online_store(settings, "sqlite")
    bodies = spine_bodies(settings, model)
    print(f"\n## Shadow: {model} champion v{pointer.version}, challenger v{challenger} scored off the request "
          f"path; {rate:.0f} requests/s for {seconds:.0f} s, off and on alternating, {repeats} runs each\n")
    rows, p99, pooled = [], {"off": [], "on": []}, {"off": [], "on": []}
    for run in range(repeats):
        for mode in ("off", "on"):
            extra = {"FTI_ONLINE_STORE": "sqlite", "FTI_SERVE_SHADOW": "1" if mode == "on" else "0"}
            with service(settings, extra, model) as port:
                warm = open_loop(port, f"/predict/{model}", bodies, 100, 3)
                assert warm.errors == 0, f"warm-up failed: {warm.statuses}"
                if mode == "on":
                    wait_for_shadow_scores(port)
                result = open_loop(port, f"/predict/{model}", bodies, rate, seconds)
                details = health_details(port)["variants"]
            shadow = details["shadow_queue"] or {}
            served = details["challengers"].get(model, {}).get("version")
            if mode == "on" and served != challenger:
                raise SystemExit(f"the service did not serve challenger v{challenger} in shadow: {details}")
            p99[mode].append(pct(result.latencies_ms, 99))
            pooled[mode].extend(result.latencies_ms)
            label = (f"shadow {mode}, run {run + 1}" + (f" (shadow scored {shadow.get('scored', 0):,}, dropped "
                                                        f"{shadow.get('dropped', 0):,})" if mode == "on" else ""))
            rows.append(result.row(label))
    print(HEADER)
    for row in rows:
        print(row)
    off, on = pct(pooled["off"], 99), pct(pooled["on"], 99)
    pairs = sorted(b / a for a, b in zip(p99["off"], p99["on"]))
    print(f"\np99 of all {len(pooled['off']):,} requests of each mode: shadow off {off:.2f} ms, on {on:.2f} ms: "
          f"on/off {on / off:.3f} (budget 1.10: {'held' if on / off <= 1.10 else 'MISSED'}). Per pair of runs, "
          f"on/off p99: {', '.join(f'{r:.2f}' for r in pairs)} (median {pairs[len(pairs) // 2]:.3f}). Load average "
          f"at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", "stores", "service", "shadow"])
    parser.add_argument("--home", help="FTI_HOME with a built warehouse and a champion (default $FTI_HOME or .fti)")
    parser.add_argument("--model", help="model to serve (default: card_fraud if it has a champion, else flight_delay)")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--high", type=float, default=2000, help="service: a second fixed rate (0: none)")
    parser.add_argument("--workers", default="1,2", help="service: worker counts to run, one after the other")
    parser.add_argument("--before", metavar="GIT_REF", help="service: first run the service of this commit (the "
                                                            "before of a before/after table), one process")
    parser.add_argument("--stores", default="sqlite,redis", help="service: which stores")
    parser.add_argument("--steps", default="400,600,800,1000,1200,1500,2000,2500,3000")
    parser.add_argument("--step-seconds", type=float, default=10)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="shadow: runs of each mode")
    args = parser.parse_args(argv)
    print(f"# Online serving benchmark\n\nMachine: {describe_machine()}; load average at start "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes compete for the cores: compare the "
          f"predict/baseline ratio, not absolute times, across runs)")
    if args.part in ("all", "stores"):
        run_stores(args.lookups)
    if args.part in ("all", "service", "shadow"):
        from models_ml.core.settings import load_settings
        from models_ml.training import registry

        settings = load_settings(args.home)
        model = args.model
        if model is None:
            model = "flight_delay"
            with contextlib.suppress(registry.RegistryError):
                registry.resolve(settings, "card_fraud")
                model = "card_fraud"
        steps = [float(s) for s in args.steps.split(",") if s]
        if args.part in ("all", "service"):
            run_service(settings, model, args.rate, args.seconds, steps, args.step_seconds, args.high or None,
                        [int(w) for w in args.workers.split(",") if w], args.before,
                        [s for s in args.stores.split(",") if s])
        if args.part in ("all", "shadow"):
            run_shadow(settings, model, args.rate, args.seconds, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
