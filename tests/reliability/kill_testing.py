"""Helpers of the kill matrix (importable as `kill_testing`): a real `fti` command in its own process group,
SIGKILLed when a trigger fires; order-free fingerprints of published tables; the matrix the tests fill in.

A trigger is an observable moment of the command (a line on its output, or a file under its home appearing or
changing) plus a seeded random delay, so a kill lands inside the step's work rather than in its imports. The
whole process group is killed, as `kill -9` of a job would: nothing the command started outlives it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from models_ml.core.settings import PROJECT_ROOT, Settings, load_settings

SMALL = {"num_boost_round": 30, "num_leaves": 7, "min_data_in_leaf": 20, "min_data_per_group": 10,
         "early_stopping_rounds": 10}
LENIENT = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0, "champion_tolerance": 1.0}
TRAIN = ("train", "--view", "flight_delay", "--start", "2013-01-01", "--end", "2013-01-08",
         "--fractions", "0.6,0.2,0.2", *(a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")),
         *(a for k, v in LENIENT.items() for a in ("--gate", f"{k}={v}")))
EARLIER_SCORING = ("predict", "--day", "2013-01-07", "--days", "3")

RUN_TIMEOUT = 180.0  # seconds a command (or its trigger) may take on a loaded 2-core machine
FLOW_STARTED_LINE = "Beginning flow run"
POLL_SECONDS = 0.005  # how often file triggers look (short enough to land inside a write of ~0.1 s)


def cli_env(**extra: str) -> dict[str, str]:
    """The test process's environment for an `fti` subprocess: the session's Prefect API (the test harness's
    server, so no command starts a temporary server of its own) and the checkout on the path."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1", **extra}


def copy_home_without_cache(source: Path, target: Path) -> Settings:
    """A copy of a home without its download cache (only landing reads it; the steps here never land)."""
    source = Path(source)
    shutil.copytree(source, target, ignore=lambda folder, names: ["cache"] if Path(folder) == source else [])
    return load_settings(target)


def run_cli(home: Path, *argv: str) -> tuple[int, str]:
    """An uninterrupted run of `fti --home <home> ...` in this process (the same entry point as the command,
    without a fresh interpreter's imports): exit code and what it printed."""
    from fti.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--home", str(home), *argv])
    return code, out.getvalue()


@dataclass(frozen=True)
class Trigger:
    """Kill ``delay`` seconds after a line of the command's output matches ``line``, or after a path matching
    ``glob`` (relative to the home) grows past its size at the start (a directory appearing, a write-ahead log
    filling; a log merely opened stays empty); with neither, right after the start."""

    label: str
    line: str | None = None
    glob: str | None = None
    delay: float = 0.0

    def describe(self) -> str:
        at = f"line /{self.line}/" if self.line else f"file {self.glob}" if self.glob else "start"
        return f"{at} +{self.delay:.2f}s"


def _sizes(home: Path, pattern: str) -> dict[Path, int]:
    found = {}
    for path in home.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            found[path] = path.stat().st_size
    return found


@dataclass
class Command:
    """One `fti` command in its own session (process group), its merged output collected line by line."""

    argv: Sequence[str]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    _ended: bool = False  # the output reached its end (the command exited or was killed)
    _new_line: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> Command:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fti.cli", *self.argv], env=self.env, cwd=PROJECT_ROOT, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self._ended = True
            self._new_line.notify_all()

    def output(self, tail: int = 40) -> str:
        with self._new_line:
            return "\n".join(self.lines[-tail:])

    def wait_for_line(self, pattern: str, timeout: float = RUN_TIMEOUT) -> bool:
        """True once a line matches; False if the command ended first."""
        regex, seen, deadline = re.compile(pattern), 0, time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        return True
                seen = len(self.lines)
                if self._ended:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line /{pattern}/ within {timeout} s:\n{self.output()}")
                self._new_line.wait(min(remaining, 0.5))

    def wait_for_file(self, home: Path, pattern: str, before: dict[Path, int], timeout: float = RUN_TIMEOUT) -> bool:
        """True once a path matching ``pattern`` is larger than in ``before`` (absent: 0); False if the command
        ended first."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if any(size > before.get(path, 0) for path, size in _sizes(home, pattern).items()):
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"no change of {pattern} within {timeout} s:\n{self.output()}")
            time.sleep(POLL_SECONDS)
        return False

    def kill(self) -> None:
        """SIGKILL the command's whole process group (it is its own session, so only what it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        return self.process.wait(timeout)


@dataclass(frozen=True)
class Killed:
    """How a kill went: whether the command was still running when the signal came, and its tail."""

    trigger: Trigger
    killed: bool
    returncode: int
    output: str

    def last_task(self) -> str:
        """The last Prefect task the output mentions (where the kill landed, roughly)."""
        found = re.findall(r"Task run '(.+?)-\w+' - (\w+)", self.output)
        if not found:
            return "before any task finished" if FLOW_STARTED_LINE in self.output else ""
        task, word = found[-1]
        return f"after {task} finished" if word == "Finished" else f"in {task}"


def fti_command(home: Path, *argv: str, env: dict[str, str] | None = None) -> Command:
    return Command(["--home", str(home), *argv], env if env is not None else cli_env())


def kill_at(command: Command, home: Path, trigger: Trigger) -> Killed:
    """Start ``command``, wait for ``trigger``, SIGKILL it (if it has not finished by then)."""
    before = _sizes(home, trigger.glob) if trigger.glob else {}
    command.start()
    try:
        if trigger.line:
            fired = command.wait_for_line(trigger.line)
        elif trigger.glob:
            fired = command.wait_for_file(home, trigger.glob, before)
        else:
            fired = True
        if fired:
            time.sleep(trigger.delay)
        killed = command.process.poll() is None
    finally:
        command.kill()
    return Killed(trigger, killed, command.process.returncode, command.output())


def kill_each(cases: Sequence[tuple[Command, Path, Trigger]]) -> list[Killed]:
    """:func:`kill_at` for every case at once (each on its own home), so a step's kill points cost one
    command's wall time rather than one each."""
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        return list(pool.map(lambda case: kill_at(*case), cases))


def kill_points(source: Path, target: Path, points: Sequence[Trigger], args: Sequence[str],
                env: dict[str, str], attempts: int = 3) -> list[tuple[Settings, Killed]]:
    """Run ``fti <args>`` on a fresh copy of the home ``source`` per kill point, all at once, and kill each
    at its point. A run that finished before its point was reached (a short-lived file missed by the poll
    on a busy machine) is not a kill: it is tried again on a new copy, up to ``attempts`` times."""
    results: dict[int, tuple[Settings, Killed]] = {}
    for attempt in range(attempts):
        pending = [i for i in range(len(points)) if i not in results or not results[i][1].killed]
        if not pending:
            break
        homes = {i: copy_home_without_cache(source, target / f"home{i}-{attempt}") for i in pending}
        kills = kill_each([(fti_command(homes[i].home, *args, env=env), homes[i].home, points[i]) for i in pending])
        results.update({i: (homes[i], killed) for i, killed in zip(pending, kills)})
    return [results[i] for i in range(len(points))]


# --------------------------------------------------------------------------------------------------
# Fingerprints of published state


@contextlib.contextmanager
def warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The warehouse read-only (a WAL left by a killed writer is replayed in memory, the file untouched)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def rows_digest(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> tuple[int, str]:
    """(row count, hash of the sorted row hashes) of a query: equal for equal multisets of rows."""
    count, digest = con.execute(
        f"select count(*), coalesce(md5(string_agg(h, ',' order by h)), '') "
        f"from (select md5(cast(q as varchar)) as h from ({sql}) q)", list(params)).fetchone()
    return int(count), digest


def relations(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return [r[0] for r in con.execute("select table_name from information_schema.tables where table_schema = ? "
                                      "order by 1", [schema]).fetchall()]


def sqlite_tables(path: Path, skip_columns: dict[str, set[str]] | None = None) -> dict[str, tuple[int, str]]:
    """Every table of a SQLite file -> (rows, hash of its sorted rows), ``skip_columns`` left out per table;
    the file is checked with ``integrity_check`` first (AssertionError if it is damaged)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (status,) = con.execute("pragma integrity_check").fetchone()
        assert status == "ok", f"{path}: {status}"
        found = {}
        for (table,) in con.execute("select name from sqlite_master where type = 'table' order by 1").fetchall():
            columns = [r[1] for r in con.execute(f'pragma table_info("{table}")')
                       if r[1] not in (skip_columns or {}).get(table, set())]
            rows = sorted(json.dumps(r, default=str) for r in con.execute(
                f"select {', '.join(chr(34) + c + chr(34) for c in columns)} from \"{table}\""))
            found[table] = (len(rows), hashlib.md5("\n".join(rows).encode()).hexdigest())
        return found
    finally:
        con.close()


_TRANSIENT_FILES = re.compile(r"(\.wal|-wal|-shm|\.lock|\.lock\.json)$")


def home_files(home: Path) -> set[str]:
    """Every file under a home (relative), but the databases' logs and the lock, which come and go."""
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and not _TRANSIENT_FILES.search(p.name)}


# --------------------------------------------------------------------------------------------------
# The matrix


@dataclass(frozen=True)
class Outcome:
    step: str
    point: str
    trigger: str
    landed: str
    after_kill: str
    after_rerun: str


MATRIX: list[Outcome] = []


def record(step: str, killed: Killed, after_kill: str, after_rerun: str) -> None:
    state = after_kill if killed.killed else f"finished before the kill (rc {killed.returncode}); {after_kill}"
    MATRIX.append(Outcome(step, killed.trigger.label, killed.trigger.describe(), killed.last_task(), state,
                          after_rerun))


def matrix_lines() -> list[str]:
    if not MATRIX:
        return []
    lines = ["kill matrix (step x kill point -> state after kill, state after re-run):"]
    for o in MATRIX:
        landed = f"; killed {o.landed}" if o.landed else ""
        lines.append(f"  {o.step:<12} {o.point:<24} [{o.trigger}{landed}]")
        lines.append(f"      after kill:   {o.after_kill}")
        lines.append(f"      after re-run: {o.after_rerun}")
    return lines


def seeded_delays(seed: int, spans: Sequence[float]) -> list[float]:
    """One delay per span, uniform in [0, span), from a fixed seed (the same kill points every run)."""
    import random

    rng = random.Random(seed)
    return [round(rng.uniform(0.0, span), 3) for span in spans]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.05)
