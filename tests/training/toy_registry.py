"""A small home with a registered, published model and no dbt project (importable as `toy_registry`).

The toy warehouse of `fti_testing` (flights every 13 minutes, an hourly carrier and weather group) with a model
of its `toy` view registered three times (v1, v2, v3: the same model, so versions differ only in number) and
v1 promoted and published. Run as a script (``python toy_registry.py --fork HOME``) it forks, for each line
it reads, a process that moves the champion back and forth forever (promote v2, roll back, promote v3, roll
back, ...): the processes the promotion kill test kills.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from fti_testing import fit_for_registry, make_toy_warehouse, toy_catalog

from models_ml.core.settings import Settings, load_settings
from models_ml.core.time import TimeRange
from models_ml.training import champion_pointer
from models_ml.training import registry
from models_ml.training import train as tr
from models_ml.training.splits import TimeSplit

MODEL = "toy"
FAST = tr.TrainConfig(num_boost_round=20, early_stopping_rounds=5, num_leaves=7, min_data_in_leaf=20,
                      min_data_per_group=10, learning_rate=0.2, categorical_features=())


def train_toy(settings: Settings) -> tuple:
    """The toy view's model trained on its first 19 days: (model, evaluation, gate, lineage), to register."""
    return fit_for_registry(settings, toy_catalog().view(MODEL), TimeRange.of("2024-01-01", "2024-01-20"),
                            TimeSplit(fractions=(0.6, 0.2, 0.2)), FAST)


def make_toy_home(home: Path, versions: int = 3) -> Settings:
    """The home described in the module docstring."""
    settings = load_settings(home)
    settings.ensure_home()
    make_toy_warehouse(settings.warehouse_path)
    trained = train_toy(settings)
    for _ in range(versions):
        registry.register_model(settings, MODEL, *trained)
    registry.promote(settings, MODEL, 1, catalog=toy_catalog())
    return settings


def move_champion_forever(home: Path) -> None:
    settings, catalog = load_settings(home), toy_catalog()
    target = 2
    while True:
        registry.promote(settings, MODEL, target, catalog=catalog)
        registry.rollback(settings, MODEL, catalog=catalog)
        target = 5 - target  # 2, 3, 2, ...


def fork_movers(home: Path) -> None:
    """For each line read, fork a :func:`move_champion_forever` (modules already imported, so it starts at
    once), print its PID, and when it dies print ``killed PID`` (or ``exited PID CODE``)."""
    settings = load_settings(home)  # a first read and payload import what the engine imports lazily
    champion_pointer.pointer_payload(settings, registry.get_version(settings, MODEL), catalog=toy_catalog())
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                move_champion_forever(home)
            finally:
                os._exit(1)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print(f"killed {pid}" if killed else f"exited {pid} {status}", flush=True)


if __name__ == "__main__":
    fork_movers(Path(sys.argv[2]))
