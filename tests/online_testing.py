"""Helpers of the online tests (importable as `online_testing`): ports, a champion, requests, a server thread."""

from __future__ import annotations

import datetime as dt
import threading
import time

from fti_testing import fit_for_registry

from bench.loopback import free_port
from models_ml.core.settings import Settings
from models_ml.core.time import TimeRange
from models_ml.definitions.catalog import load_catalog
from models_ml.training import registry
from models_ml.training import train as tr
from models_ml.training.splits import TimeSplit

UTC = dt.timezone.utc
MODEL = "flight_delay"
FAST = tr.TrainConfig(num_boost_round=40, early_stopping_rounds=10, num_leaves=7, min_data_in_leaf=20,
                      min_data_per_group=10, learning_rate=0.2)
FLIGHT_RANGE = TimeRange.of("2013-01-01", "2013-01-09")
FLIGHT_SPLIT = TimeSplit(fractions=(0.6, 0.2, 0.2))


def train_champion(settings: Settings, *, seed: int = 42, model_name: str = MODEL,
                   time_range: TimeRange = FLIGHT_RANGE, split: TimeSplit = FLIGHT_SPLIT) -> registry.ModelVersion:
    """Train a model (default flight_delay, on the slice's first days) and make it champion, which publishes
    its pointer. Direct calls, no Prefect, no plots, a gate that passes anything: the online tests need a
    served model, not a good one, and drawing the plots would cost more than training."""
    config = tr.TrainConfig(**{**FAST.as_dict(), "seed": seed, "categorical_features": ()})
    model, evaluation, gate, lineage = fit_for_registry(settings, load_catalog(settings).view(model_name),
                                                        time_range, split, config)
    version = registry.register_model(settings, model_name, model, evaluation, gate, lineage)
    registry.promote(settings, model_name, version.version)
    return version


def spine_requests(settings: Settings, n: int = 50) -> list[dict]:
    """Real flights from the end of the slice as prediction requests (JSON-ready)."""
    from fti_testing import query

    rows = query(settings, """
        select flight_id, carrier_code, origin_airport_code, destination_airport_code, tail_number,
               scheduled_hour_local, scheduled_weekday_local, distance_miles, prediction_at
        from labels.label_flight__departure_delay
        where tail_number is not null and prediction_at >= timestamptz '2013-01-10 12:00:00+00'
        order by flight_id limit ?""", [n])
    names = ["flight_id", "carrier_code", "origin_airport_code", "destination_airport_code", "tail_number",
             "scheduled_hour_local", "scheduled_weekday_local", "distance_miles", "prediction_at"]
    out = []
    for row in rows:
        item = dict(zip(names, row))
        item["prediction_at"] = item["prediction_at"].astimezone(UTC).isoformat()
        out.append(item)
    return out


class ServerThread:
    """The real app under uvicorn on a free loopback port, in a thread of the test process, configured as
    ``fti serve`` configures it (the limits of the app's :class:`ServeConfig`, the guarded protocol)."""

    def __init__(self, app) -> None:
        import uvicorn

        from models_ml.inference.online.serving.server import uvicorn_config

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=self.port,
                                                    config=app.state.fti_guard.config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def post_until_stopped(url: str, bodies: list[dict], stop: threading.Event, statuses: list[int],
                       versions: list[int]) -> None:
    """One client posting `bodies` in turn over one keep-alive connection until `stop` is set: every
    status into `statuses`, the model version of every answer into `versions`."""
    import httpx

    with httpx.Client(timeout=10) as http:
        i = 0
        while not stop.is_set():
            response = http.post(f"{url}/predict/{MODEL}", json=bodies[i % len(bodies)])
            statuses.append(response.status_code)
            if response.status_code == 200:
                versions.append(response.json()["version"])
            i += 1
