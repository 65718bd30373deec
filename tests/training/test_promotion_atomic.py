"""Promotion and rollback as one step: the pointer follows the registry's commit, an interruption anywhere is
found and repaired (by the next promotion, `fti doctor --repair` or the service at start), and a no-op
promotion writes nothing. Homes are the toy registry of `toy_registry` (no dbt project)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fti_testing import toy_catalog
from toy_registry import MODEL, make_toy_home

from fti import doctor_commands
from models_ml.core.settings import PROJECT_ROOT, load_settings
from models_ml.inference.online.serving.metrics import Metrics
from models_ml.inference.online.serving.state import ServiceState
from models_ml.inference.online.store import open_online_store
from models_ml.training import champion_pointer as cp
from models_ml.training import registry

CATALOG = toy_catalog()


class Killed(BaseException):
    """Stands for the process dying at the point where it is raised (nothing after it runs)."""


def dies(*args, **kwargs):
    raise Killed


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_toy_home(tmp_path_factory.mktemp("atomic") / "home")


@pytest.fixture()
def home(template, tmp_path):
    """A private copy (the registry's paths are relative to the home, so a copy needs no fixing)."""
    shutil.copytree(template.home, tmp_path / "home")
    return load_settings(tmp_path / "home")


def served_versions(settings) -> dict[str, int]:
    """What the service serves right after its start (the real start: reconcile, then load the pointers)."""
    state = ServiceState(settings=settings, store=open_online_store(settings, "sqlite"), metrics=Metrics(),
                         log=None, only=None, poll_seconds=3600)
    state.start()
    try:
        return {name: served.version for name, served in state.models.items()}
    finally:
        state.stop()


def champion(settings) -> int:
    return registry.get_aliases(settings, MODEL)[registry.CHAMPION]


def run_doctor(settings, capsys, *arguments: str) -> tuple[int, list[str], str]:
    parser = argparse.ArgumentParser(prog="fti")
    parser.add_argument("--home")
    doctor_commands.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["--home", str(settings.home), "doctor", *arguments])
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_promotion_publishes_a_relative_pointer_and_a_noop_changes_nothing(home):
    pointer = cp.read_pointer(home, MODEL)
    assert pointer.version == 1 and pointer.model_dir == home.models_dir / MODEL / "1"
    assert json.loads(pointer.path.read_text())["model_dir"] == f"models/{MODEL}/1"
    history, stat = registry.alias_history(home, MODEL), pointer.path.stat()

    change = registry.promote(home, MODEL, 1, catalog=CATALOG)
    assert not change.changed and (change.previous_version, change.version) == (1, 1)
    assert registry.alias_history(home, MODEL) == history
    assert pointer.path.stat().st_mtime_ns == stat.st_mtime_ns
    assert registry.reconcile_pointers(home, repair=False) == []

    change = registry.promote(home, MODEL, 2, catalog=CATALOG)
    assert change.changed and (change.previous_version, change.version) == (1, 2)
    assert cp.read_pointer(home, MODEL).version == 2 and cp.interrupted_models(home) == []
    with pytest.raises(registry.RegistryError, match="only by promotion or rollback"):
        registry.set_alias(home, MODEL, registry.CHAMPION, 3)


def test_killed_after_the_commit_the_service_finishes_the_promotion(home, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(cp, "install_staged", dies)
        with pytest.raises(Killed):
            registry.promote(home, MODEL, 2, catalog=CATALOG)
    assert champion(home) == 2 and cp.read_pointer(home, MODEL).version == 1  # the half-done state
    (mismatch,) = registry.reconcile_pointers(home, repair=False)
    assert (mismatch.problem, mismatch.registry_version, mismatch.pointer_version) == ("stale", 2, 1)
    assert "interrupted" in mismatch.detail

    assert served_versions(home) == {MODEL: 2}
    assert registry.reconcile_pointers(home, repair=False) == [] and cp.interrupted_models(home) == []


def test_killed_before_the_commit_the_staged_pointer_is_dropped(home, monkeypatch):
    with monkeypatch.context() as patch:  # an error inside the transaction: undone, and the stage with it
        patch.setattr(registry, "_set_alias", dies)
        with pytest.raises(Killed):
            registry.promote(home, MODEL, 3, catalog=CATALOG)
    assert champion(home) == 1 and registry.reconcile_pointers(home, repair=False) == []

    # A kill leaves the staged file behind: the pointer and registry agree, the leftover is reported and dropped.
    cp.stage(home, cp.pointer_payload(home, registry.get_version(home, MODEL, 3), catalog=CATALOG))
    (mismatch,) = registry.reconcile_pointers(home, repair=False)
    assert (mismatch.problem, mismatch.registry_version, mismatch.pointer_version) == ("interrupted", 1, 1)
    assert served_versions(home) == {MODEL: 1}
    assert registry.reconcile_pointers(home, repair=False) == []


def test_the_next_promotion_repairs_first(home, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(cp, "install_staged", dies)
        with pytest.raises(Killed):
            registry.promote(home, MODEL, 2, catalog=CATALOG)
    change = registry.rollback(home, MODEL, catalog=CATALOG)  # from the committed v2, not the served v1
    assert (change.previous_version, change.version) == (2, 1)
    assert cp.read_pointer(home, MODEL).version == 1 and registry.reconcile_pointers(home, repair=False) == []


def test_doctor_lists_repairs_and_then_finds_nothing(home, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        patch.setattr(cp, "install_staged", dies)
        with pytest.raises(Killed):
            registry.promote(home, MODEL, 3, catalog=CATALOG)
    ghost = home.models_dir / "ghost" / cp.POINTER_FILE  # a pointer whose model the registry does not know
    ghost.parent.mkdir()
    ghost.write_text(cp.pointer_path(home, MODEL).read_text().replace(f'"{MODEL}"', '"ghost"'))

    code, lines, err = run_doctor(home, capsys)
    assert code == 1 and lines == [
        "ghost: orphan: champion.json serves v1 but the registry has no champion for it",
        "toy: stale: champion.json serves v1 but the registry's champion is v3 (a promotion to v3 was interrupted)",
    ]
    assert "fti doctor --repair" in err

    code, lines, _ = run_doctor(home, capsys, "--repair")
    assert code == 0 and [line.split("; repaired: ")[1] for line in lines] == [
        "withdrew the pointer (no champion in the registry)", "installed the staged pointer for v3"]
    assert not ghost.exists() and cp.read_pointer(home, MODEL).version == 3

    assert run_doctor(home, capsys) == (0, ["ok: every champion pointer agrees with the registry"], "")


def test_a_home_without_a_registry_is_not_judged(home, tmp_path, capsys):
    """A service host may hold only the models: its pointers are neither orphans nor withdrawn."""
    bare = load_settings(tmp_path / "bare")
    shutil.copytree(home.models_dir, bare.models_dir)
    with pytest.raises(registry.RegistryError, match="no model registry"):
        registry.reconcile_pointers(bare, repair=True)
    code, lines, err = run_doctor(bare, capsys, "--repair")
    assert code == 2 and lines == [] and "no model registry" in err
    assert cp.read_pointer(bare, MODEL).version == 1 and not bare.warehouse_path.exists()


# --------------------------------------------------------------------------------------------------
# Killed for real


KILLS, SEED = 20, 18


def harness(settings, log: Path) -> subprocess.Popen:
    """`toy_registry.py --fork HOME`: imports once, then forks one champion-mover per line it reads."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "tests")])}
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("toy_registry.py")), "--fork",
                             str(settings.home)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log.open("w"), text=True, env=env)


@pytest.mark.slow
def test_promotions_killed_at_random_moments_are_always_repaired(home, tmp_path):
    rng = random.Random(SEED)
    process = harness(home, tmp_path / "movers.log")
    disagreements = leftovers = moves = 0
    try:
        for kill in range(KILLS):
            before = len(registry.alias_history(home, MODEL))
            process.stdin.write("go\n")
            process.stdin.flush()
            pid = int(process.stdout.readline())
            time.sleep(rng.uniform(0.05, 1.5))  # a moment somewhere in a promotion, a rollback or between
            os.kill(pid, signal.SIGKILL)
            status = process.stdout.readline().split()
            assert status == ["killed", str(pid)], (status, (tmp_path / "movers.log").read_text())

            moves += len(registry.alias_history(home, MODEL)) - before
            found = registry.reconcile_pointers(home, repair=False)
            disagreeing = [m for m in found if m.problem != "interrupted"]
            disagreements += len(disagreeing)
            leftovers += len(found) - len(disagreeing)
            # Every disagreement carries the staged pointer the service looks for at start.
            assert {m.model_name for m in found} <= set(cp.interrupted_models(home)), found
            if kill % 2 == 0:
                assert served_versions(home) == {MODEL: champion(home)}
            else:
                registry.reconcile_pointers(home, repair=True)
            assert registry.reconcile_pointers(home, repair=False) == []
            assert cp.read_pointer(home, MODEL).version == champion(home)
            last = registry.alias_history(home, MODEL, registry.CHAMPION)[-1]
            assert last["version"] == champion(home)  # the registry itself is never half-changed
    finally:
        process.stdin.close()  # the harness ends when its input does
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(f"\npromotion kills: {disagreements}/{KILLS} left the registry and the pointer disagreeing, "
          f"{leftovers}/{KILLS} left a staged pointer only; 0/{KILLS} after reconciling "
          f"({moves} alias changes committed between kills)", file=sys.__stdout__)
    assert moves > 0  # the movers did move: the kills landed in promotions and rollbacks, not before them
