"""The consumer as a service: the systemd unit in the repository runs a command the CLI accepts, and a
SIGTERM (what a service manager stops with) ends the consumer cleanly after its micro-batch: exit 0, nothing
left pending, and a restart carries on where it stopped."""

from __future__ import annotations

import configparser
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from streaming_testing import replay_events

from examples.fraud.producer import publish
from fti.cli import build_parser
from models_ml.core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "fraud" / "service" / "fti-stream-consumer@.service"


def test_the_unit_runs_the_consume_command_and_restarts_it():
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    command = shlex.split(service["ExecStart"].replace("%i", "1"))
    assert Path(command[0]).name == "fti"
    args = build_parser().parse_args(command[1:])
    assert (args.prog, args.consumer, args.stream, args.group) == ("fti stream consume", "consumer-1", "fraud:events",
                                                                  "features")


@pytest.mark.slow
def test_sigterm_finishes_the_micro_batch_and_exits_cleanly(tmp_path, redis_url):
    settings = load_settings(tmp_path / "home")
    client = redis.Redis.from_url(redis_url)
    events = replay_events(settings, days=3)
    publish(client, "fraud:events", events)
    command = [sys.executable, "-m", "fti.cli", "--home", str(settings.home), "stream", "consume", "--redis-url",
               redis_url, "--count", "40", "--online-store", "sqlite"]
    consumer = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while int(client.hget("fraud:events:metrics", "events") or 0) < len(events) // 4:
            assert consumer.poll() is None, consumer.stderr.read()
            assert time.monotonic() < deadline, "the consumer made no progress"
            time.sleep(0.05)
        consumer.send_signal(signal.SIGTERM)
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    done = int(client.hget("fraud:events:metrics", "events"))
    assert f"consumed {done} events" in out and done < len(events)
    assert client.xpending("fraud:events", "features")["pending"] == 0  # the batch in hand was acknowledged

    # the restart (the service command's module, with an idle exit so the test can wait for it)
    second = subprocess.Popen([sys.executable, "-m", "models_ml.streaming.consumer", "--redis-url", redis_url,
                               "--home", str(settings.home), "--count", "40", "--online-store", "sqlite",
                               "--idle-exit", "0.5"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert int(client.hget("fraud:events:metrics", "events")) == len(events)  # each entry consumed once
    client.close()
