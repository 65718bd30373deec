"""A command's configuration or lookup error inside a flow fails it at once: the flows' retry policy
(flows/retry.py) retries transient I/O errors only, even where a permanent error is an OSError."""

from __future__ import annotations

import pytest
from prefect import flow, task
from prefect.states import Failed

from flows.retry import io_task_options, retry_on
from models_ml.core.settings import SettingsError
from models_ml.definitions.catalog import CatalogError
from models_ml.offline.store import transient_errors
from models_ml.training.registry import RegistryError

PERMANENT = [
    CatalogError("no domain 'nope' (known: churn, flights, fraud)"),
    RegistryError("no model 'nope' in the registry"),
    SettingsError("FTI_LOCK_WAIT_SECONDS='soon' is not a non-negative number of seconds"),
    ValueError("day is out of range for month"),
    KeyError("nope"),
    ModuleNotFoundError("No module named 'examples.nope.loader'"),
    FileNotFoundError(2, "No such file or directory", "examples/nope/data.csv"),
    PermissionError(13, "Permission denied", "/root/warehouse.duckdb"),
]
TRANSIENT = [OSError(5, "Input/output error"), BlockingIOError(11, "Resource temporarily unavailable"),
             ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out"),
             *(error("Could not set lock on file") for error in transient_errors() if error is not OSError)]

name = lambda e: type(e).__name__  # noqa: E731


@pytest.mark.parametrize("error", PERMANENT, ids=name)
def test_a_configuration_lookup_or_path_error_is_not_retried(error):
    assert retry_on(transient_errors())(None, None, Failed(data=error)) is False


@pytest.mark.parametrize("error", TRANSIENT, ids=name)
def test_a_transient_io_error_is_retried(error):
    assert retry_on(transient_errors())(None, None, Failed(data=error)) is True


@pytest.mark.parametrize("error", [CatalogError("no domain 'nope'"), FileNotFoundError(2, "gone", "x.csv")], ids=name)
def test_a_flow_step_that_raises_one_runs_once(prefect_harness, error):
    attempts = []

    @task(**io_task_options(retry_delay_seconds=0))
    def land() -> None:
        attempts.append(1)
        raise error

    @flow
    def pipeline() -> None:
        land()

    with pytest.raises(type(error)):
        pipeline()
    assert len(attempts) == 1
