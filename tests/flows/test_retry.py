"""The flows' one retry policy, run by Prefect: a transient I/O error is retried, anything else fails at once."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.retry import io_task_options
from models_ml.offline.store import transient_errors


class StoreUnreachable(Exception):
    """Stands for an online store's connection error, which only the flow that uses that store names."""


def flaky(error: BaseException, failures: int = 1, **options):
    """A task that raises ``error`` on its first ``failures`` attempts, then returns how many it took."""
    attempts = []

    @task(**io_task_options(retry_delay_seconds=0, **options))
    def step() -> int:
        attempts.append(1)
        if len(attempts) <= failures:
            raise error
        return len(attempts)

    @flow
    def run() -> int:
        return step()

    return run, attempts


@pytest.mark.parametrize("error", [error("held by another process") for error in transient_errors()],
                         ids=lambda e: type(e).__name__)
def test_an_engine_lock_or_os_error_is_retried(prefect_harness, error):
    run, attempts = flaky(error, failures=2)
    assert run() == 3 and len(attempts) == 3


def test_a_value_error_fails_at_once(prefect_harness):
    run, attempts = flaky(ValueError("bad data"))
    with pytest.raises(ValueError, match="bad data"):
        run()
    assert len(attempts) == 1


def test_retries_run_out(prefect_harness):
    run, attempts = flaky(OSError("disk gone"), failures=5)
    with pytest.raises(OSError, match="disk gone"):
        run()
    assert len(attempts) == 3  # the first attempt and two retries


def test_a_flow_names_its_own_transient_errors(prefect_harness):
    assert flaky(StoreUnreachable("no route"), extra=(StoreUnreachable,))[0]() == 2
    run, attempts = flaky(StoreUnreachable("no route"))
    with pytest.raises(StoreUnreachable):
        run()
    assert len(attempts) == 1
