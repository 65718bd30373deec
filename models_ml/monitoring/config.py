"""What monitoring expects, as the dbt project declares it: a group's freshness, a view's alert thresholds.

The catalog carries the two ``meta.fti`` mappings as declared (``FeatureGroup.freshness``,
``FeatureView.monitoring``); they are typed, defaulted and checked here, where they are used, so a wrong
key or value fails with one line naming the group or view, the key and the fix.

``meta.fti.freshness`` of a feature group (optional; a group without it is reported, never alerted on)::

    freshness: {warn_after: 1 day, error_after: 3 days}

Both ages of the group are held against it: the time since its latest event (as of the data time the
monitoring run is about) and the time since it was last built (its latest ``created_time``, as of now).

``meta.fti.monitoring`` of a feature view (every key optional, defaults below)::

    monitoring: {psi: 0.2, top_k: 5, auc_drop: 0.03, stale_groups: error}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models_ml.definitions.catalog import CatalogError, FeatureGroup, FeatureView, parse_ttl

FRESHNESS_KEYS = ("warn_after", "error_after")
STALE_LEVELS = ("warn", "error", "off")


class MonitoringConfigError(CatalogError):
    """A ``meta.fti.freshness`` or ``meta.fti.monitoring`` setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class FreshnessExpectation:
    """How old a group's data may get: past ``warn_after`` it warns, past ``error_after`` it errors."""

    warn_after: dt.timedelta | None = None
    error_after: dt.timedelta | None = None

    def level(self, age: dt.timedelta | None) -> str:
        """``error``, ``warn`` or ``ok`` for an age (None: nothing built yet, an error when anything is expected)."""
        if self.warn_after is None and self.error_after is None:
            return "ok"
        if age is None or (self.error_after is not None and age > self.error_after):
            return "error"
        return "warn" if self.warn_after is not None and age > self.warn_after else "ok"


@dataclass(frozen=True)
class Thresholds:
    """When a view's model is alerted on, and which alerts start retraining.

    * ``psi``: a PSI at or above it on any of the ``top_k`` inputs by the model's importance, in any window
      of the run, is a drift alert that retrains; on another input or on the score it is a warning;
    * ``auc_drop``: the ROC-AUC of the evaluated days (labels final, ``min_label_share``; at least
      ``min_labelled`` labelled rows in all) this much below the test split's is an alert that retrains;
    * ``null_rate``: a missing-rate change against the reference at least this large (either way) warns;
    * ``stale_groups``: the freshness level from which a group the view reads is alerted on (``error``,
      ``warn``, or ``off``); a stale group never retrains (new data is what it lacks);
    * ``retrain``: whether a crossed retrain threshold starts the training flow at all;
    * ``days``: how many days (the last scored ones) a scheduled run looks at.
    """

    psi: float = 0.2
    top_k: int = 5
    auc_drop: float = 0.03
    min_label_share: float = 1.0
    min_labelled: int = 200
    null_rate: float = 0.1
    stale_groups: str = "error"
    retrain: bool = True
    days: int = 7


_THRESHOLD_TYPES: dict[str, tuple[type, ...]] = {
    f.name: (bool,) if f.type == "bool" else (int,) if f.type == "int" else (float, int) if f.type == "float" else (str,)
    for f in dataclasses.fields(Thresholds)
}


def freshness_expectation(group: FeatureGroup) -> FreshnessExpectation:
    """The group's ``meta.fti.freshness``, typed (empty when it declares none)."""
    where = f"feature group {group.name} v{group.version}"
    declared = dict(group.freshness)
    unknown = sorted(set(declared) - set(FRESHNESS_KEYS))
    if unknown:
        raise MonitoringConfigError(f"{where}: unknown key meta.fti.freshness.{unknown[0]}; known: "
                                    f"{', '.join(FRESHNESS_KEYS)}")
    ages = {}
    for key in FRESHNESS_KEYS:
        try:
            ages[key] = parse_ttl(declared.get(key), where)
        except CatalogError:
            raise MonitoringConfigError(f"{where}: meta.fti.freshness.{key} {declared[key]!r} is not a duration; "
                                        f"write it like '6 hours' or '2 days'") from None
    expectation = FreshnessExpectation(**ages)
    if expectation.warn_after and expectation.error_after and expectation.warn_after > expectation.error_after:
        raise MonitoringConfigError(f"{where}: meta.fti.freshness.warn_after ({declared['warn_after']}) is after "
                                    f"error_after ({declared['error_after']}); warn before erroring")
    return expectation


def thresholds(view: FeatureView, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """The view's ``meta.fti.monitoring`` over the defaults, then ``overrides`` (a run's own) over both."""
    where = f"feature view {view.name} v{view.version}"
    values: dict[str, Any] = {}
    for origin, mapping in (("meta.fti.monitoring", dict(view.monitoring)), ("override", dict(overrides or {}))):
        for key, value in mapping.items():
            values[key] = _checked(key, value, where, origin)
    return Thresholds(**values)


def _checked(key: str, value: Any, where: str, origin: str) -> Any:
    """One threshold, refused in one line when unknown, mistyped or out of range."""
    if key not in _THRESHOLD_TYPES:
        raise MonitoringConfigError(f"{where}: unknown {origin} key {key!r}; known: {', '.join(_THRESHOLD_TYPES)}")
    types = _THRESHOLD_TYPES[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise MonitoringConfigError(f"{where}: {origin} {key} must be {'a number' if float in types else types[0].__name__}"
                                    f", got {value!r}")
    if key == "stale_groups" and value not in STALE_LEVELS:
        raise MonitoringConfigError(f"{where}: {origin} stale_groups must be one of {', '.join(STALE_LEVELS)}, "
                                    f"got {value!r}")
    if key in ("psi", "auc_drop", "null_rate") and not value > 0:
        raise MonitoringConfigError(f"{where}: {origin} {key} must be above 0, got {value!r}")
    if key == "min_label_share" and not 0 < value <= 1:
        raise MonitoringConfigError(f"{where}: {origin} min_label_share must be in (0, 1], got {value!r}")
    if key in ("top_k", "days") and value < 1:
        raise MonitoringConfigError(f"{where}: {origin} {key} must be at least 1, got {value!r}")
    if key == "min_labelled" and value < 0:
        raise MonitoringConfigError(f"{where}: {origin} min_labelled must be 0 or more, got {value!r}")
    return float(value) if float in types else value
