"""The one retry policy of every flow: retry what a retry can fix (I/O), fail at once on anything else.

Another process holding the warehouse for a moment, a file-system hiccup or an unreachable online store
clear up on their own; a refused model, bad data, a configuration error or a bug do not, and retrying them
would only hide the reason for a while. The transient types are the offline store engines' own
(:func:`models_ml.offline.store.transient_errors`, which include OSError) plus any a flow names for its
other stores (an online store's connection errors). Never retried, even where they are OSErrors:
:data:`PERMANENT` (our configuration and lookup errors are all ValueErrors; a missing file or a permission
stays missing on a retry).

Inputs and results pass between tasks in memory (Arrow tables, models): hashing them for a cache key
would cost more than the step, so no task caches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prefect.cache_policies import NO_CACHE

from models_ml.offline.store import transient_errors

RETRIES = 2
RETRY_DELAY_SECONDS = 5

#: the options of a task that only computes (no I/O): no retries, no cache
CPU_TASK_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE}

#: errors a retry cannot fix, checked before the transient ones: configuration, lookups (CatalogError,
#: RegistryError, SettingsError, a domain or loader not found), bad data and bugs, and the OSErrors that
#: name a path that is not there or not allowed
PERMANENT: tuple[type[BaseException], ...] = (
    ValueError, LookupError, TypeError, AttributeError, ImportError, NotImplementedError,
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
)


def retry_on(transient: tuple[type[BaseException], ...]) -> Callable[[Any, Any, Any], bool]:
    """A Prefect ``retry_condition_fn`` that retries a failed run only when it raised one of ``transient``
    (and none of :data:`PERMANENT`)."""

    def is_transient(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except PERMANENT:
            return False
        except transient:
            return True
        except Exception:  # noqa: BLE001 - a refusal, a bug or bad data: retrying would hide it
            return False
        return False

    return is_transient


def io_task_options(extra: Sequence[type[BaseException]] = (), *, retries: int = RETRIES,
                    retry_delay_seconds: float = RETRY_DELAY_SECONDS) -> dict[str, Any]:
    """The ``@task`` options of a step that reads or writes a store: retried on I/O errors only (the
    offline engines' transient errors, OSError, and ``extra``), never cached."""
    transient = tuple(dict.fromkeys((*transient_errors(), *extra)))
    return {"retries": retries, "retry_delay_seconds": retry_delay_seconds,
            "retry_condition_fn": retry_on(transient), "cache_policy": NO_CACHE}
