"""The churn example's on-demand function: whole days between two instants.

The customer_churn view (dbt_project/models/features/churn/_churn__view.yml) names it as
``examples.churn.on_demand:days_between`` to turn the usage group's ``last_used_at`` into days since last
use at the prediction time: a stored "days since" would be stale as soon as the row is (the point-in-time
join takes the latest row at or before the prediction, which may be weeks old for a customer who stopped
using the product). Element-wise numpy over float64 arrays, so one request and a snapshot chunk give the
same bits (see models_ml/definitions/on_demand.py).
"""

from __future__ import annotations

import numpy as np

from models_ml.definitions.on_demand import on_demand_function

MICROS_PER_DAY = 86_400_000_000.0


@on_demand_function(at="timestamp", since="timestamp")
def days_between(at: np.ndarray, since: np.ndarray) -> np.ndarray:
    """Days (fractional) from ``since`` to ``at``; missing when either is."""
    return (at - since) / MICROS_PER_DAY
