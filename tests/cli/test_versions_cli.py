"""Feature and view versions on the command line: `fti features show` lists a view's versions with the group
versions each reads and a group's versions with the models using each; `fti models show` prints the alias
history; `fti train --view-version N` trains on that version of the view, checked before anything starts.

The commands run in-process (``fti.cli.main``), on the modules' shared homes; the one training run works on
a private copy of the built slice of real flights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fti_testing import copy_home

import fti.cli
from models_ml.training import registry

CARRIER = "fg_carrier__delay_stats"
FAST = ["--set", "num_boost_round=40", "--set", "early_stopping_rounds=10", "--set", "num_leaves=7",
        "--set", "min_data_in_leaf=20", "--set", "min_data_per_group=10", "--set", "learning_rate=0.2"]
LENIENT = ["--gate", "min_roc_auc=0", "--gate", "max_ece=1", "--gate", "min_worst_slice_roc_auc=0"]


def fti_main(capsys, home, *args: str, show: bool = False) -> tuple[int, str, str]:
    """`fti ARGS` in-process: exit code, stdout, stderr (``show`` also prints them, seen with `pytest -s`)."""
    code = fti.cli.main(["--home", str(home.home), *args])
    out, err = capsys.readouterr()
    if show:
        with capsys.disabled():
            print(f"\n$ fti {' '.join(args)}\n{out}{err}")
    return code, out, err


def section(out: str, title: str) -> list[str]:
    """The lines of the table printed under ``title`` (up to the next blank line)."""
    lines = out.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_an_unknown_view_version_is_one_line_listing_the_versions(capsys, parsed_home):
    code, out, err = fti_main(capsys, parsed_home, "train", "--view", "flight_delay", "--view-version", "9")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["fti train: error: --view-version: feature view flight_delay has no version 9 "
                                "(versions: v1, v2, v3)"]


def test_features_show_lists_every_view_version_with_its_group_versions(capsys, parsed_home):
    code, out, _ = fti_main(capsys, parsed_home, "features", "show", "flight_delay")
    assert code == 0 and out.startswith("feature view flight_delay v1:")
    rows = section(out, "versions of flight_delay:")[2:]
    assert [row.split()[0] for row in rows] == ["v1", "v2", "v3"]  # v3: with the external airport operations
    assert "(current)" in rows[0] and "(current)" not in rows[1] + rows[2]
    assert f"{CARRIER} v1" in rows[0] and f"{CARRIER} v2" in rows[1]

    code, out, _ = fti_main(capsys, parsed_home, "features", "show", "flight_delay", "--version", "2")
    assert code == 0 and out.startswith("feature view flight_delay v2:") and "carrier_flight_count_1d" in out

    code, _, err = fti_main(capsys, parsed_home, "features", "show", "flight_delay", "--version", "7")
    assert code == 2 and err.strip() == ("fti features show: error: --version: feature view 'flight_delay' has "
                                         "no version 7 (versions: v1, v2, v3)")

    code, out, _ = fti_main(capsys, parsed_home, "features", "list")
    views = [line.split()[:2] for line in out.splitlines() if line.startswith("flight_delay ")]
    assert views == [["flight_delay", "v1"], ["flight_delay", "v2"], ["flight_delay", "v3"]]


def test_features_show_of_a_group_lists_its_versions(capsys, parsed_home):
    code, out, _ = fti_main(capsys, parsed_home, "features", "show", CARRIER)
    assert code == 0
    rows = section(out, f"versions of {CARRIER}:")[2:]
    assert [row.split()[:2] for row in rows] == [["v1", "(latest)"], ["v2", f"features.{CARRIER}_v2"]]
    assert all(row.endswith("none") for row in rows)  # no registry in this home: no model uses either


def test_models_show_prints_the_alias_history_and_lineage(capsys, registry_home):
    code, out, _ = fti_main(capsys, registry_home, "models", "show", "toy", "2")
    assert code == 0
    assert "  feature view:  toy v1" in out and "  groups:        none" in out
    header, _, *rows = section(out, "alias history of toy, oldest first:")
    assert header.split() == ["when", "who", "alias", "action", "from", "→", "to", "reason"]
    assert len(rows) == 2
    assert "champion" in rows[0] and "promote" in rows[0] and "- → v1" in rows[0]
    assert "challenger" in rows[1] and "set" in rows[1] and "- → v2" in rows[1]
    assert all(" UTC " in row and "@" in row for row in rows)


def test_registry_messages_read_as_text_not_python(registry_home):
    with pytest.raises(registry.RegistryError) as error:
        registry.get_version(registry_home, "toy", 9)
    assert str(error.value).endswith("(versions: v1, v2)")
    with pytest.raises(registry.RegistryError) as error:
        registry.resolve(registry_home, "toy", "staging")
    assert str(error.value).endswith("(aliases: challenger → v2, champion → v1)")


# pandas is not among them: DuckDB imports it at the first statement with parameters, in any command that reads
# the warehouse
MODEL_LIBRARIES = ("lightgbm", "scipy", "sklearn", "matplotlib")
PROBE = """
import contextlib, io, json, sys
import fti.cli

codes = []
for args in (["models", "list"], ["models", "show", "toy", "champion"]):
    with contextlib.redirect_stdout(io.StringIO()):
        codes.append(fti.cli.main(["--home", sys.argv[1], *args]))
print(json.dumps({"codes": codes, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))}))
"""


def test_registry_commands_load_no_model_library(registry_home):
    probe = subprocess.run([sys.executable, "-c", PROBE, str(registry_home.home), *MODEL_LIBRARIES],
                           capture_output=True, text=True, check=True)
    assert json.loads(probe.stdout) == {"codes": [0, 0], "loaded": []}


@pytest.mark.slow
def test_train_on_view_v2_stays_challenger_while_its_groups_are_not_online(capsys, built_home, tmp_path,
                                                                           prefect_harness):
    from models_ml.inference.online.materialize import refresh_online_store

    home = copy_home(built_home, tmp_path / "home")
    refresh_online_store(home, "sqlite")  # no model yet: each group's latest version, carrier v1 only
    code, out, err = fti_main(capsys, home, "train", "--view", "flight_delay", "--view-version", "2",
                              "--start", "2013-01-01", "--end", "2013-01-09", "--fractions", "0.6,0.2,0.2",
                              *FAST, *LENIENT, show=True)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("flight_delay v1 -> challenger (gate passed")
    assert lines[1].startswith(f"not promoted to champion: cannot promote flight_delay to v1 as champion: its "
                               f"feature group {CARRIER}:v2 is not materialized in the online store")
    assert lines[2].startswith("feature view flight_delay v2: ") and f"{CARRIER} v2" in lines[2]

    version = registry.get_version(home, "flight_delay", 1)
    assert (version.feature_view_version, version.feature_group_versions[CARRIER]) == (2, 2)
    assert registry.get_aliases(home, "flight_delay") == {"challenger": 1}

    code, out, _ = fti_main(capsys, home, "features", "show", CARRIER, show=True)
    rows = section(out, f"versions of {CARRIER}:")[2:]
    assert rows[0].endswith("none") and rows[1].endswith("flight_delay v1 (challenger)")

    code, out, _ = fti_main(capsys, home, "models", "show", "flight_delay", show=True)
    assert "  feature view:  flight_delay v2" in out and f"{CARRIER} v2" in out
    (row,) = section(out, "alias history of flight_delay, oldest first:")[2:]
    assert "challenger" in row and "- → v1" in row and "gate passed; promotion refused: cannot promote" in row
