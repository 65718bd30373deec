"""A home is one folder that can be copied, moved or restored: its registry and pointers store paths relative
to it, and a home written with absolute paths still works once moved (migrated on read).

The end-to-end case trains a champion on the ten-day flights slice in one home, rewrites its stored paths to
the absolute form older homes have, copies the home elsewhere and deletes the original; from the copy it
loads the champion, scores a day in batch, serves a request with `fti serve` over loopback, and trains and
promotes a new version that the running service then serves.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time

import duckdb
import httpx
import pytest
from fti_testing import copy_home, query

from bench.loopback import free_port, stop, wait_for_port
from models_ml.core.home_paths import from_stored, to_stored
from models_ml.core.settings import PROJECT_ROOT, load_settings
from models_ml.core.time import day_window
from models_ml.inference.batch import pipeline as bp
from models_ml.inference.online.materialize import refresh_online_store
from models_ml.training import champion_pointer as cp
from models_ml.training import pipeline as tp
from models_ml.training import registry

MODEL = "flight_delay"
FAST = {"num_boost_round": 40, "early_stopping_rounds": 10, "num_leaves": 7, "min_data_in_leaf": 20,
        "min_data_per_group": 10, "learning_rate": 0.2}
ANY_GATE = {"min_roc_auc": 0.0, "max_ece": 1.0, "min_worst_slice_roc_auc": 0.0}


def test_stored_paths_are_relative_and_old_absolute_ones_follow_the_home(tmp_path):
    home, old = tmp_path / "new" / "home", tmp_path / "old" / "home"
    (home / "models" / "m" / "1").mkdir(parents=True)
    assert to_stored(home, home / "models" / "m" / "1") == "models/m/1"
    assert to_stored(home, tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    assert from_stored(home, "models/m/1") == home / "models" / "m" / "1"
    assert from_stored(home, str(old / "models" / "m" / "1")) == home / "models" / "m" / "1"  # migrated
    assert from_stored(home, str(old / "models" / "m" / "2")) == old / "models" / "m" / "2"  # nothing to map to


def train(settings, seed: int) -> tp.TrainingRun:
    """The training pipeline's own steps, small and fast, with a gate that passes anything."""
    plan = tp.plan_training(settings, MODEL, start="2013-01-01", end="2013-01-09", fractions=(0.6, 0.2, 0.2),
                            overrides={**FAST, "seed": seed}, gate_overrides=ANY_GATE)
    return tp.run_training(settings, plan)


def make_absolute(settings) -> None:
    """Store the paths as homes written before relative paths did: absolute, into this home."""
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("update registry.model_versions set model_dir = ? || '/' || model_dir", [str(settings.home)])
    path = cp.pointer_path(settings, MODEL)
    pointer = json.loads(path.read_text())
    del pointer["paths_relative_to"]
    pointer["model_dir"] = str(settings.home / pointer["model_dir"])
    path.write_text(json.dumps(pointer))


def a_request(settings, pointer: cp.Pointer) -> dict:
    """A real flight from the end of the slice, with the fields the pointer's request schema names."""
    names = [f.name for f in pointer.fields]
    label = pointer.view.label
    required = " and ".join(f"{f.name} is not null" for f in pointer.fields if f.required)
    (row,) = query(settings, f"select {', '.join(names)} from {label.schema}.{label.relation} "
                             f"where {required} order by {label.spine_time} desc, {label.entity[0]} limit 1")
    return {n: v.astimezone(dt.timezone.utc).isoformat() if isinstance(v, dt.datetime) else v
            for n, v in zip(names, row)}


def served_version(url: str, request: dict) -> int:
    response = httpx.post(f"{url}/predict/{MODEL}", json=request, timeout=30)
    assert response.status_code == 200, response.text
    assert 0 < response.json()["score"] < 1
    return response.json()["version"]


@pytest.mark.slow
def test_a_moved_home_serves_predicts_and_trains(built_home, tmp_path):
    original = copy_home(built_home, tmp_path / "original" / "home")
    assert train(original, seed=42).version.version == 1
    refresh_online_store(original, "sqlite")
    make_absolute(original)
    moved = tmp_path / "moved" / "home"
    shutil.copytree(original.home, moved)
    shutil.rmtree(original.home)
    settings = load_settings(moved)

    version, _ = registry.load(settings, MODEL)
    assert version.model_dir == settings.models_dir / MODEL / "1"
    pointer = cp.read_pointer(settings, MODEL)
    assert pointer.model_dir == version.model_dir and pointer.stored_model_dir.startswith(str(original.home))

    scored = bp.predict_window(settings, MODEL, day_window("2013-01-09"), num_threads=1)
    assert (scored.model_version, scored.rows > 0) == (1, True)

    port = free_port()
    env = {**os.environ, "FTI_HOME": str(settings.home), "PYTHONPATH": str(PROJECT_ROOT)}
    log = tmp_path / "serve.log"
    server = subprocess.Popen([sys.executable, "-m", "fti.cli", "serve", "--port", str(port)], env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=90)
        url, request = f"http://127.0.0.1:{port}", a_request(settings, pointer)
        assert served_version(url, request) == 1

        retrained = train(settings, seed=7)  # trains against the moved champion, then promotes
        assert (retrained.version.version, retrained.alias) == (2, registry.CHAMPION)
        deadline = time.monotonic() + 60
        while served_version(url, request) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served_version(url, request) == 2, log.read_text()
    finally:
        stop(server)

    stored = query(settings, "select version, model_dir from registry.model_versions order by version")
    assert stored[1] == (2, f"models/{MODEL}/2")
    text = cp.pointer_path(settings, MODEL).read_text()
    assert json.loads(text)["model_dir"] == f"models/{MODEL}/2" and str(original.home) not in text
    assert registry.reconcile_pointers(settings, repair=False) == []

    cp.pointer_path(settings, MODEL).unlink()  # a lost pointer is republished from the registry, catalog and all
    (missing,) = registry.reconcile_pointers(settings, repair=False)
    assert (missing.problem, missing.registry_version) == ("missing", 2)
    (repaired,) = registry.reconcile_pointers(settings, repair=True)
    assert repaired.repaired == "republished the pointer for v2"
    assert cp.read_pointer(settings, MODEL).model_dir == settings.models_dir / MODEL / "2"
