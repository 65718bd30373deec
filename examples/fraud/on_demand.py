"""The fraud example's on-demand functions: distance, time and speed between two card transactions, and a
guarded ratio.

The card_fraud view names them in its exposure as ``examples.fraud.on_demand:<function>``
(dbt_project/models/_exposures.yml); the catalog imports this module when it reads the view. Each is an
element-wise numpy function of float64 arrays, so one request and a snapshot chunk give the same bits
(see models_ml/definitions/on_demand.py).
"""

from __future__ import annotations

import numpy as np

from models_ml.definitions.on_demand import on_demand_function

EARTH_RADIUS_KM = 6371.0088


@on_demand_function(latitude="float", longitude="float", other_latitude="float", other_longitude="float")
def haversine_km(latitude: np.ndarray, longitude: np.ndarray, other_latitude: np.ndarray,
                 other_longitude: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between two points (mean Earth radius)."""
    lat1, lon1, lat2, lon2 = (np.radians(a) for a in (latitude, longitude, other_latitude, other_longitude))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@on_demand_function(at="timestamp", since="timestamp")
def seconds_between(at: np.ndarray, since: np.ndarray) -> np.ndarray:
    """Seconds from ``since`` to ``at``."""
    return (at - since) / 1e6


@on_demand_function(latitude="float", longitude="float", at="timestamp",
                    other_latitude="float", other_longitude="float", since="timestamp")
def speed_kmh(latitude: np.ndarray, longitude: np.ndarray, at: np.ndarray, other_latitude: np.ndarray,
              other_longitude: np.ndarray, since: np.ndarray) -> np.ndarray:
    """Speed in km/h needed to travel from the other point at ``since`` to this one at ``at`` (at least a
    second of travel, so two purchases in the same second far apart are fast, not infinite)."""
    km = haversine_km(latitude, longitude, other_latitude, other_longitude)
    hours = np.maximum(seconds_between(at, since), 1.0) / 3600.0
    return km / hours


@on_demand_function(numerator="float", denominator="float")
def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator; missing when the denominator is zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / denominator, np.nan)
