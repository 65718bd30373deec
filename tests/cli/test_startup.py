"""`fti --help`, every sub-command's `--help` and a usage error import none of the libraries behind the
commands: building the parser is cheap, and each handler imports what it needs when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("lightgbm", "pandas", "scipy", "duckdb", "prefect", "dbt", "pyarrow", "numpy", "ibis", "matplotlib",
         "uvicorn", "starlette", "redis")

PROBE = """
import contextlib, io, json, sys
import fti.cli

parser = fti.cli.build_parser()
commands = [[]]
for action in parser._subparsers._group_actions:
    for name, sub in action.choices.items():
        commands.append([name])
        for inner in sub._actions:
            if inner.__class__.__name__ == "_SubParsersAction":
                commands += [[name, leaf] for leaf in inner.choices]
codes = {}
for args in commands + [["features", "run", "--through", "2013-02-30"], ["nope"]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            fti.cli.main(args if args[-1:] == ["nope"] or "--through" in args else args + ["--help"])
        except SystemExit as exit:
            codes[" ".join(args)] = exit.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_the_parser_help_and_usage_errors_import_nothing_heavy():
    probe = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"], capture_output=True, text=True,
                           check=True)
    found = json.loads(probe.stdout)
    assert found["heavy"] == []
    codes = found["codes"]
    assert {"", "features run", "models promote", "train", "predict", "serve", "doctor"} <= set(codes)
    assert all(code == 0 for args, code in codes.items() if args not in ("features run --through 2013-02-30", "nope"))
    assert codes["features run --through 2013-02-30"] == 2 and codes["nope"] == 2
