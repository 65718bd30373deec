"""The home lock between real processes: fail at once naming the holder, wait then take it, wait then give
up, nest within a process, and free the home when its holder is killed."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from models_ml.core.home_lock import HomeBusy, hold_home, holds_home
from models_ml.core.settings import PROJECT_ROOT, SettingsError, load_settings

# A second process that takes the home for `command`, says so, and holds it until stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from models_ml.core.home_lock import HomeBusy, hold_home
    from models_ml.core.settings import load_settings
    try:
        with hold_home(load_settings(sys.argv[1]), sys.argv[2]) as holder:
            print("held", holder.pid, holder.since, flush=True)
            sys.stdin.read()
    except HomeBusy as busy:
        print(busy, flush=True)
        sys.exit(3)
""")


def other_process(home, command: str = "training", wait: str = "0") -> subprocess.Popen:
    env = {**os.environ, "FTI_LOCK_WAIT_SECONDS": wait}
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(home), command], cwd=PROJECT_ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate("", timeout=60)
    return process.returncode, out.strip(), err.strip()


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path):
    settings = load_settings(tmp_path / "home")
    with hold_home(settings, "feature pipeline") as holder:
        code, out, err = finish(other_process(settings.home))
    assert code == 3 and err == ""
    assert out == (f"FTI_HOME {settings.home} is in use by `feature pipeline` (PID {os.getpid()} on "
                   f"{socket.gethostname()}, since {holder.since}); wait for it or set FTI_LOCK_WAIT_SECONDS "
                   f"(seconds to wait for the lock)")
    assert holder.since.endswith("Z")


def test_a_waiting_process_says_so_once_and_takes_the_home_when_it_is_free(tmp_path):
    settings = load_settings(tmp_path / "home")
    with hold_home(settings, "batch inference"):
        waiter = other_process(settings.home, wait="60")
        line = waiter.stderr.readline().strip()  # blocks until the waiter has found the home taken
        assert line.startswith(f"waiting up to 60 s for FTI_HOME {settings.home}, in use by `batch inference` "
                               f"(PID {os.getpid()} on ")
    code, out, err = finish(waiter)
    assert code == 0 and out.startswith(f"held {waiter.pid} ") and err == ""


def test_a_waiting_process_gives_up_after_its_wait(tmp_path):
    settings = load_settings(tmp_path / "home")
    with hold_home(settings, "online materialization"):
        code, out, err = finish(other_process(settings.home, wait="0.3"))
    assert code == 3
    assert err.startswith("waiting up to 0.3 s for FTI_HOME") and len(err.splitlines()) == 1
    assert "in use by `online materialization`" in out and "after waiting 0.3 s; wait for it or set" in out


def test_holds_nest_within_a_process_and_the_outermost_releases(tmp_path):
    settings = load_settings(tmp_path / "home")
    with hold_home(settings, "feature pipeline") as outer:
        with hold_home(settings, "online materialization") as inner:
            assert inner == outer and holds_home(settings)
        assert holds_home(settings)
        assert finish(other_process(settings.home))[0] == 3  # still held after the inner hold ended
    assert not holds_home(settings)
    code, out, _ = finish(other_process(settings.home))
    assert code == 0 and out.startswith("held ")
    assert not (settings.home / ".lock.json").exists()  # the holder's record goes with the hold


def test_a_killed_holder_frees_the_home(tmp_path):
    settings = load_settings(tmp_path / "home")
    holder = other_process(settings.home, "feature pipeline")
    assert holder.stdout.readline().startswith(f"held {holder.pid} ")
    with pytest.raises(HomeBusy, match=rf"in use by `feature pipeline` \(PID {holder.pid} on "), \
            hold_home(settings, "training"):
        pass
    holder.send_signal(signal.SIGKILL)
    finish(holder)
    with hold_home(settings, "training") as taken:  # its record is left behind, but the kernel freed the lock
        assert taken.pid == os.getpid()


def test_the_wait_is_read_from_the_environment_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("FTI_LOCK_WAIT_SECONDS", "2.5")
    assert load_settings(tmp_path).lock_wait_seconds == 2.5
    monkeypatch.delenv("FTI_LOCK_WAIT_SECONDS")
    assert load_settings(tmp_path).lock_wait_seconds == 0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("FTI_LOCK_WAIT_SECONDS", bad)
        with pytest.raises(SettingsError, match=rf"^FTI_LOCK_WAIT_SECONDS='{bad}' is not a non-negative number "
                                                r"of seconds; set it to 0 \(fail at once\) or a positive"):
            load_settings(tmp_path)


def test_the_wait_comes_from_the_settings(tmp_path):
    settings = dataclasses.replace(load_settings(tmp_path / "home"), lock_wait_seconds=0.2)
    holder = other_process(settings.home, "feature pipeline")
    assert holder.stdout.readline().startswith("held ")
    lines: list[str] = []
    with pytest.raises(HomeBusy, match=r"after waiting 0.2 s"), hold_home(settings, "training", notify=lines.append):
        pass
    assert len(lines) == 1 and lines[0].startswith("waiting up to 0.2 s")
    finish(holder)
