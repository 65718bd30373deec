"""The `fti` command's one error path, run as a user runs it (the installed entry point, its own process):
every bad argument is one line on stderr naming the argument and the fix, exit 2, before anything starts;
a failure at run time is one line and exit 1; `--debug` (or FTI_DEBUG=1) shows the traceback instead."""

from __future__ import annotations

import logging
import re

import pytest
from cli_testing import MODEL, error_lines, run_fti
from fti_testing import copy_home

from fti.cli import main
from models_ml.core.home_lock import hold_home
from models_ml.core.settings import load_settings

# (arguments, the whole error line): checked by the parser, no home read
PARSER_ERRORS = [
    (["features", "run", "--through", "2013-02-30"],
     "fti features run: error: --through: 2013-02-30 is not a date (YYYY-MM-DD); see `fti features run --help`"),
    (["predict", "--day", "2013-02-30"],
     "fti predict: error: --day: 2013-02-30 is not a date (YYYY-MM-DD); see `fti predict --help`"),
    (["train", "--start", "2013-13-01"],
     "fti train: error: --start: 2013-13-01 is not a date (YYYY-MM-DD); see `fti train --help`"),
    (["train", "--fractions", "0.5,0.5"],
     "fti train: error: --fractions: 0.5,0.5 is not three positive shares summing to 1 (like 0.7,0.15,0.15); "
     "see `fti train --help`"),
    (["predict", "--timezone", "Mars/Base"],
     "fti predict: error: --timezone: Mars/Base is not an IANA time zone (like UTC or America/New_York); "
     "see `fti predict --help`"),
    (["predict", "--days", "0"], "fti predict: error: --days: 0 is not a whole number of at least 1; "
                                 "see `fti predict --help`"),
    (["models", "promote", MODEL, "vx"],
     "fti models promote: error: version: vx is not a version number (like 3 or v3); see `fti models promote --help`"),
    (["modles", "list"], "fti: error: no command 'modles' (commands: features, demo, models, train, predict, "
                         "outcomes, online, serve, doctor, monitor, stream); did you mean models?"),
    (["features"], "fti features: error: a command is required: one of list, show, run; see `fti features --help`"),
    (["serve", "--log-level", "loud"], "fti serve: error: --log-level: 'loud' is not one of debug, info, warning, "
                                       "error, critical; see `fti serve --help`"),
]


@pytest.mark.parametrize(("args", "line"), PARSER_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_argument_is_one_line_and_exit_2_before_anything_starts(args, line, tmp_path):
    result = run_fti(*args, home=tmp_path / "home")
    assert (result.returncode, error_lines(result), result.stdout) == (2, [line], "")
    assert not (tmp_path / "home").exists()  # nothing started, nothing written


# (arguments, what the line says): names the catalog knows, checked before a flow starts
CATALOG_ERRORS = [
    (["features", "show", "flight_dealy"],
     "fti features show: error: name: no feature group 'flight_dealy' nor feature view of that name; did you mean "
     "flight_delay? (groups: fg_airport__operations, fg_airport__weather, fg_card__activity,"),
    (["features", "show", "fg_airport__weather", "--version", "9"],
     "fti features show: error: --version: feature group 'fg_airport__weather' has no version 9 (versions: v1)"),
    (["train", "--view", "no_such_view"],
     "fti train: error: --view: no feature view 'no_such_view' (known: card_fraud, customer_churn, flight_delay)"),
    (["train", "--view", "flight_delay", "--set", "num_leavs=10"],
     "fti train: error: --set: no training parameter 'num_leavs'; did you mean num_leaves? (known: bagging_fraction"),
    (["train", "--view", "flight_delay", "--set", "num_leaves=many"],
     "fti train: error: --set: TrainConfig.num_leaves: 'many' is not a"),
    (["train", "--view", "flight_delay", "--gate", "min_roc=0.6"],
     "fti train: error: --gate: no gate threshold 'min_roc'; did you mean min_roc_auc? (known: "),
    (["train", "--view", "flight_delay", "--set", "num_leaves"],
     "fti train: error: --set: 'num_leaves' is not KEY=VALUE"),
    (["features", "run", "--domain", "nope"],
     "fti features run: error: --domain: no domain 'nope' (known: churn, flights, fraud)"),
    (["features", "run"], "fti features run: error: --domain: which domain? the project has 3 (churn, flights, "
                          "fraud): name one with --domain"),
    (["online", "materialize", "--store", "memcache"],
     "fti online materialize: error: --store: no online store 'memcache' (known: redis, sqlite)"),
    (["online", "materialize", "--group", "fg_airport__wether"],
     "fti online materialize: error: --group: no online feature group 'fg_airport__wether'; did you mean "
     "fg_airport__weather? (known: fg_airport__operations, fg_airport__weather, "),
]


def in_process(settings, args: list[str], capsys) -> tuple[int, list[str]]:
    """`main(args)` in this process (what the entry point calls): its exit code and stderr lines."""
    code = main(["--home", str(settings.home), *args])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(("args", "start"), CATALOG_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_an_unknown_name_or_setting_lists_the_known_ones_before_a_flow_starts(args, start, parsed_home, capsys):
    code, lines = in_process(parsed_home, args, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(start), lines[0]
    assert not parsed_home.warehouse_path.exists()  # no flow ran: nothing landed, built or trained


def test_the_installed_command_rejects_a_setting_before_prefect_starts(parsed_home):
    result = run_fti("train", "--view", "flight_delay", "--set", "num_leavs=10", home=parsed_home)
    assert result.returncode == 2 and len(error_lines(result)) == 1 and "prefect" not in result.stderr.lower()
    assert "did you mean num_leaves?" in result.stderr


def test_features_show_lists_views_and_groups_and_ttls_read_as_declared(parsed_home):
    shown = run_fti("features", "show", "flight_dealy", home=parsed_home)
    assert "views: card_fraud, customer_churn, flight_delay)" in shown.stderr
    listing = run_fti("features", "list", home=parsed_home)
    assert listing.returncode == 0 and "0:00:00" not in listing.stdout
    weather = next(line for line in listing.stdout.splitlines() if line.startswith("fg_airport__weather"))
    route = next(line for line in listing.stdout.splitlines() if line.startswith("fg_route__delay_stats"))
    assert "3 hours" in weather and "7 days" in route
    group = run_fti("features", "show", "fg_carrier__delay_stats", home=parsed_home)
    assert "ttl: 2 days " in group.stdout


# (arguments, the whole error line): the registry's names, versions and aliases, with no Python repr in sight
REGISTRY_ERRORS = [
    (["models", "list", "no_such_model"], "fti models list: error: name: no model 'no_such_model' (known: toy)"),
    (["models", "show", "no_such_model"], "fti models show: error: name: no model 'no_such_model' (known: toy)"),
    (["models", "show", MODEL, "nope"],
     "fti models show: error: version: model 'toy' has no 'nope' alias (aliases: challenger → v2, champion → v1); "
     "give a version number, latest, or one of its aliases"),
    (["models", "show", MODEL, "7"], "fti models show: error: version: model 'toy' has no version 7 (versions: v1, v2)"),
    (["models", "promote", MODEL, "9"],
     "fti models promote: error: version: model 'toy' has no version 9 (versions: v1, v2)"),
    (["models", "rollback", MODEL],
     "fti models rollback: error: --alias: model 'toy' has no earlier champion to roll back to (champion history: v1); "
     "promote a version instead"),
    (["predict", "--model", "no_such_model"], "fti predict: error: --model: no model 'no_such_model' (known: toy)"),
    (["predict", "--model", "tyo"], "fti predict: error: --model: no model 'tyo' (known: toy); did you mean toy?"),
    (["outcomes", "--alias", "nope"],
     "fti outcomes: error: --alias: model 'toy' has no 'nope' alias (aliases: challenger → v2, champion → v1); "
     "give a version number, latest, or one of its aliases"),
]


@pytest.mark.parametrize(("args", "line"), REGISTRY_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_an_unknown_model_version_or_alias_is_one_line_and_exit_2(args, line, registry_home, capsys):
    assert in_process(registry_home, args, capsys) == (2, [line])
    assert not re.search(r"[\[{]'|[\[{]\d", line)  # no list or dict repr


def test_the_installed_command_rejects_an_unknown_model_before_prefect_starts(registry_home):
    result = run_fti("predict", "--model", "no_such_model", home=registry_home)
    assert (result.returncode, error_lines(result)) == (
        2, ["fti predict: error: --model: no model 'no_such_model' (known: toy)"])


def test_an_empty_registry_says_how_to_get_a_model(tmp_path, capsys):
    settings = load_settings(tmp_path / "home")
    assert main(["--home", str(settings.home), "models", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no models registered"
    assert in_process(settings, ["predict"], capsys) == (
        2, ["fti predict: error: --model: the registry has no model yet; train one with `fti train`"])
    assert in_process(settings, ["models", "list", "no_such_model"], capsys) == (
        2, ["fti models list: error: name: no model 'no_such_model': the registry has none yet; train one with "
            "`fti train`"])


@pytest.fixture
def held_home(registry_home, tmp_path):
    """A copy of the registry home held by this process, as another command would hold it."""
    settings = copy_home(registry_home, tmp_path / "home")
    with hold_home(settings, "the test's long command"):
        yield settings


def test_a_busy_home_is_its_holder_in_one_line_and_exit_1(held_home):
    result = run_fti("models", "promote", MODEL, "2", home=held_home)
    lines = error_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fti models promote: error: FTI_HOME {held_home.home} is in use by "
                               f"`the test's long command` (PID ")
    assert "Traceback" not in result.stderr


def test_a_busy_home_fails_a_flow_command_before_prefect_starts(parsed_home, tmp_path):
    settings = copy_home(parsed_home, tmp_path / "home")
    with hold_home(settings, "the test's long command"):
        result = run_fti("features", "run", "--domain", "flights", home=settings)
    lines = error_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "is in use by `the test's long command`" in lines[0] and "prefect" not in result.stderr.lower()


def test_debug_shows_the_traceback_instead(held_home):
    flag = run_fti("--debug", "models", "promote", MODEL, "2", home=held_home)
    assert flag.returncode == 1
    assert "Traceback (most recent call last)" in flag.stderr and "HomeBusy: FTI_HOME" in flag.stderr
    variable = run_fti("models", "show", MODEL, "nope", home=held_home, env={"FTI_DEBUG": "1"})
    assert variable.returncode == 2
    assert "Traceback (most recent call last)" in variable.stderr and "UsageError: version: model 'toy'" \
        in variable.stderr


def test_a_command_leaves_logging_as_it_was(registry_home, capsys):
    factory = logging.getLogRecordFactory()
    assert in_process(registry_home, ["models", "show", MODEL, "7"], capsys)[0] == 2
    assert logging.getLogRecordFactory() is factory


@pytest.mark.slow
def test_a_flow_that_fails_ends_with_its_exception_in_one_line_without_a_traceback(parsed_home, tmp_path):
    """The feature pipeline flow runs (Prefect's temporary server and all) and its landing step refuses a day
    before the data starts: Prefect's progress lines, then the one line; no traceback, no retry."""
    settings = copy_home(parsed_home, tmp_path / "home")
    result = run_fti("features", "run", "--domain", "flights", "--through", "2012-12-01", home=settings,
                     env={"PREFECT_HOME": str(tmp_path / "prefect")}, timeout=300)
    assert result.returncode == 2, result.stderr
    ours = [line for line in error_lines(result) if line.startswith("fti ")]
    assert ours == ["fti features run: error: --through 2012-12-01 is before the data's first day 2013-01-01; "
                    "pass a later day"]
    assert "Traceback" not in result.stderr and "Retry" not in result.stderr
