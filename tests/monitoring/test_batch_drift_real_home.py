"""Drift of a real flight_delay champion's batch predictions: every input and the score get every
statistic for every scored day, the reference is its train split scored once, re-running changes nothing,
and `fti monitor drift` prints the table."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest
from fti_testing import query
from monitoring_testing import DAYS, MODEL

from fti import monitor_commands
from fti.text import UsageError
from models_ml.monitoring.pipeline import compute_drift
from models_ml.monitoring.profile import SCORE_FEATURE
from models_ml.monitoring.reference import MonitoringError
from models_ml.offline.store import opened
from models_ml.training import registry


def drift_rows(settings) -> list[tuple]:
    return query(settings, "select model_name, version, source, feature, window_start, window_end, statistic, value "
                           "from monitoring.feature_drift where source = 'batch' order by all")


def test_every_input_and_the_score_gets_every_statistic_per_day(monitored_home):
    run = compute_drift(monitored_home, MODEL, rebuild_reference=True)
    version = registry.resolve(monitored_home, MODEL)
    assert (run.source, run.origin) == ("batch", f"predictions.{MODEL}")
    assert [w.start.date() for w in run.windows] == list(DAYS)
    assert run.reference.part == "train" and run.reference.built_now
    assert run.reference.spine_time_before == dt.datetime.fromisoformat(version.split["validation_start"])
    assert run.reference.rows == version.split["rows"]["train"]

    found = query(monitored_home, "select feature, statistic, count(*) from monitoring.feature_drift "
                                  "where source = 'batch' group by all order by all")
    by_feature: dict[str, dict[str, int]] = {}
    for feature, statistic, windows in found:
        by_feature.setdefault(feature, {})[statistic] = windows
    assert set(by_feature) == {*version.features, SCORE_FEATURE}
    categorical = set(registry.load(monitored_home, MODEL)[1].spec.categories)
    for feature, statistics in by_feature.items():
        common = {"psi", "missing_rate", "missing_rate_change", "rows"}
        kind = {"unseen_share"} if feature in categorical else {"ks", "out_of_range_share"}
        assert common | kind <= set(statistics) <= common | kind, feature
        assert all(count == len(DAYS) for count in statistics.values()), (feature, statistics)

    scored = query(monitored_home, f"select count(*) from predictions.{MODEL} where model_version = ?",
                   [version.version])[0][0]
    rows = query(monitored_home, "select sum(value) from monitoring.feature_drift where source = 'batch' and "
                                 "feature = ? and statistic = 'rows'", [SCORE_FEATURE])[0][0]
    assert rows == scored > 1000
    values = query(monitored_home, "select statistic, min(value), max(value) from monitoring.feature_drift "
                                   "where source = 'batch' group by all")
    for statistic, low, high in values:
        assert low >= (-1 if statistic == "missing_rate_change" else 0), statistic
        assert statistic in ("rows", "psi") or high <= 1, statistic


def test_rerunning_changes_nothing_and_reuses_the_reference(monitored_home):
    compute_drift(monitored_home, MODEL)
    before = drift_rows(monitored_home)
    profile = query(monitored_home, "select count(*), sum(n) from monitoring.reference_profile")
    again = compute_drift(monitored_home, MODEL, first_day=DAYS[1], last_day=DAYS[1])
    assert not again.reference.built_now and again.written.deleted == again.written.inserted
    assert drift_rows(monitored_home) == before
    assert query(monitored_home, "select count(*), sum(n) from monitoring.reference_profile") == profile


def test_a_version_without_batch_predictions_is_refused_naming_the_fix(monitored_home):
    with opened(monitored_home) as store:
        store.rename_table("predictions", MODEL, "hidden")
    try:
        with pytest.raises(MonitoringError, match="no batch predictions.*fti predict --model flight_delay"):
            compute_drift(monitored_home, MODEL)
    finally:
        with opened(monitored_home) as store:
            store.rename_table("predictions", "hidden", MODEL)


def run_command(settings, *argv: str) -> int:
    """`fti --home H monitor ...` through the command's own parser (the main parser registers it)."""
    parser = argparse.ArgumentParser(prog="fti")
    parser.add_argument("--home")
    monitor_commands.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--home", str(settings.home), "monitor", *argv])
    return args.handler(args)


def test_the_command_prints_one_line_per_feature_flagged_by_psi(monitored_home, capsys):
    assert run_command(monitored_home, "drift", "--model", MODEL, "--warn", "0.05", "--alert", "0.2") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("feature"))
    table = lines[header + 2:-1]
    assert {line.split()[0] for line in table} == {*registry.resolve(monitored_home, MODEL).features, SCORE_FEATURE}
    assert all(line.split()[-1] in ("ok", "WARN", "ALERT") for line in table)
    assert lines[-1].endswith("(PSI ≥ 0.05 warn, ≥ 0.2 alert)")


def test_the_performance_command_prints_the_days_beside_the_test_split(monitored_home, capsys):
    assert run_command(monitored_home, "performance", "--model", MODEL) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[-3:]] == [str(DAYS[0]), str(DAYS[1]), "test"]
    assert "monitoring.performance" in lines[1]


def test_bad_arguments_are_one_line_naming_the_argument(monitored_home):
    with pytest.raises(UsageError, match="--to: 2013-01-09 is before --from 2013-01-10"):
        run_command(monitored_home, "drift", "--from", "2013-01-10", "--to", "2013-01-09")
    with pytest.raises(UsageError, match="--warn: 0.3 is above --alert 0.25"):
        run_command(monitored_home, "drift", "--warn", "0.3")
