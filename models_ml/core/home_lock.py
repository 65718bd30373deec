"""One writer at a time per home: a lock every command that writes the warehouse takes at its start.

DuckDB lets one process open a database file for writing; a second writer used to fail deep inside its run
with a raw lock error, after it had started and half-reported. So every writing command (feature pipeline,
training, batch inference, online materialization) takes this lock first and either fails at once with one
line naming the holder, or waits up to ``FTI_LOCK_WAIT_SECONDS`` (printing one "waiting" line) for it.

The rule for readers: a command that needs a consistent state (predict reading features, snapshot,
materialize) takes the same lock, so it never sees a dbt build half-done; a reader that only looks at
published rows (the service, ``fti features show``) does not take it.

The lock is ``flock`` on ``<home>/.lock``, held for the command's life and released by the kernel when the
process dies, so a killed holder never leaves a stale lock. The holder's record (command, PID, host, since)
sits beside it in ``<home>/.lock.json``, written atomically, only so a waiter can say who holds the home.
Holding is re-entrant within a process: a flow that runs the feature pipeline and then materialization
holds it once and nests the second hold.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from models_ml.core.settings import Settings

LOCK_NAME, HOLDER_NAME = ".lock", ".lock.json"
POLL_SECONDS = 0.2


class HomeBusy(RuntimeError):
    """Another process holds the home's lock; the message names it and the fix."""


@dataclass(frozen=True)
class Holder:
    """Who holds a home: the command, its process and since when (UTC)."""

    command: str
    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"`{self.command}` (PID {self.pid} on {self.host}, since {self.since})"


@dataclass
class _Held:
    fd: int
    pid: int
    depth: int
    holder: Holder


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def current_holder(home: Path) -> Holder | None:
    """The recorded holder of ``home``'s lock, or None when there is no readable record."""
    try:
        record = json.loads((home / HOLDER_NAME).read_text())
        return Holder(str(record["command"]), int(record["pid"]), str(record["host"]), str(record["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int, host: str) -> bool:
    """Whether process ``pid`` of ``host`` may still run: False only when it is this host's and gone (another
    host's cannot be told from here, and another user's live process refuses the signal)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_holder(home: Path, patience: float = 1.0) -> Holder | None:
    """The holder's record, waiting a moment for it: a new holder writes it just after taking the lock, and
    a killed one's record stays until then."""
    deadline = time.monotonic() + patience
    while True:
        holder = current_holder(home)
        if (holder is not None and process_alive(holder.pid, holder.host)) or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


def _busy_message(home: Path, waited: float) -> str:
    holder = _live_holder(home)
    who = holder.describe() if holder else "another process"
    after = f" after waiting {waited:g} s" if waited else ""
    return (f"FTI_HOME {home} is in use by {who}{after}; wait for it or set FTI_LOCK_WAIT_SECONDS "
            f"(seconds to wait for the lock)")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _write_holder(home: Path, holder: Holder) -> None:
    """Record the holder atomically (a waiter never reads half a record)."""
    temporary = home / f"{HOLDER_NAME}.{holder.pid}.tmp"
    temporary.write_text(json.dumps(holder.__dict__))
    os.replace(temporary, home / HOLDER_NAME)


def _acquire(home: Path, command: str, wait_seconds: float, notify: Callable[[str], None]) -> int:
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        if not _try_lock(fd):
            if wait_seconds <= 0:
                raise HomeBusy(_busy_message(home, 0))
            holder = _live_holder(home)
            notify(f"waiting up to {wait_seconds:g} s for FTI_HOME {home}, in use by "
                   f"{holder.describe() if holder else 'another process'}")
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise HomeBusy(_busy_message(home, wait_seconds))
                time.sleep(POLL_SECONDS)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def hold_home(settings: Settings, command: str, notify: Callable[[str], None] = _to_stderr) -> Iterator[Holder]:
    """Hold ``settings.home`` for ``command`` (a few words, e.g. "feature pipeline") while the block runs.

    Fails at once with :class:`HomeBusy` when another process holds it, or waits up to
    ``settings.lock_wait_seconds`` (one ``notify`` line) first. A nested hold in the same process just
    counts; the outermost one releases.
    """
    home = settings.ensure_home().resolve()
    pid = os.getpid()
    with _guard:
        held = _held.get(home)
        if held is not None and held.pid == pid:
            held.depth += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield held.holder
        finally:
            with _guard:
                held.depth -= 1
        return
    fd = _acquire(home, command, settings.lock_wait_seconds, notify)
    since = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    holder = Holder(command, pid, socket.gethostname(), since)
    with _guard:
        _held[home] = _Held(fd, pid, 1, holder)
    try:
        _write_holder(home, holder)
        yield holder
    finally:
        with _guard:
            _held.pop(home, None)
        try:
            (home / HOLDER_NAME).unlink(missing_ok=True)  # before unlocking, so it never removes a successor's
        finally:
            os.close(fd)  # releases the flock


def holds_home(settings: Settings) -> bool:
    """Whether this process holds ``settings.home`` (a step that must run under the lock can check)."""
    with _guard:
        held = _held.get(settings.home.resolve())
        return held is not None and held.pid == os.getpid()
