"""The `fti` command: inspect the feature store, run the pipelines, run the demo; and its one error path.

Each ``*_commands`` module adds its commands with ``register(subparsers)`` (doctor: ``add_parser``); a
handler (``args -> exit code``) imports what it needs when it runs, so building the parser imports none of
the libraries behind the commands, and `fti --help` or a usage error answers at once. A handler checks its
arguments (names, dates, settings) before it starts a flow.

A failure prints one line, ``fti <command>: error: <what>``, naming the argument and the fix, and exits 2
for a usage error (a bad argument, an unknown name) or 1 for a failure at run time (the home held by another
command, a failing dbt test, an I/O error, a bug); ``--debug`` (or ``FTI_DEBUG=1``) shows the traceback
instead. A flow that fails ends the same way, with the line of the exception that failed it: Prefect's console
keeps its progress lines but not its tracebacks (its API keeps them).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from fti import (
    doctor_commands,
    features_commands,
    models_commands,
    monitor_commands,
    online_commands,
    predict_commands,
    stream_commands,
)
from fti.text import did_you_mean, iso_date

USAGE, FAILURE, INTERRUPTED = 2, 1, 130
DESCRIPTION = "Declarative, SQL-first ML: feature pipelines, training, batch and online inference."
_OUR_PACKAGES = frozenset({"fti", "models_ml", "flows", "examples"})
_ROOT = Path(__file__).resolve().parents[1]
_LONGEST_LINE = 600


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``fti <command>: error: <argument>: <what>``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        line = self._one_line(message)
        fix = "" if line.endswith("?") else f"; see `{self.prog} --help`"  # a suggestion is the fix
        self.exit(USAGE, f"{self.prog}: error: {line}{fix}\n")

    def _one_line(self, message: str) -> str:
        commands = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
        if commands and message.startswith("the following arguments are required") and commands.dest in message:
            return f"a command is required: one of {', '.join(commands.choices)}"
        choice = re.fullmatch(r"argument (?P<arg>[^:]+): invalid choice: '(?P<value>.*)' \(choose from (?P<of>.*)\)",
                              message)
        if choice:
            value, known = choice["value"], [c.strip().strip("'") for c in choice["of"].split(",")]
            if commands and choice["arg"] == commands.dest:
                return f"no command {value!r} (commands: {', '.join(known)}){did_you_mean(value, known)}"
            return f"{choice['arg']}: {value!r} is not one of {', '.join(known)}{did_you_mean(value, known)}"
        return re.sub(r"^argument ([^:]+): ", r"\1: ", message)


def demo(args: argparse.Namespace) -> int:
    from fti.demo import run_demo
    from models_ml.core.settings import load_settings

    return run_demo(load_settings(args.home), through=args.through)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fti", description=DESCRIPTION)
    parser.add_argument("--home", help="state directory (default: $FTI_HOME or ./.fti)")
    parser.add_argument("--debug", action="store_true",
                        help="on a failure, show the traceback instead of one line (also FTI_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    features_commands.register(commands)
    demo_parser = commands.add_parser("demo", help="the end-to-end demo on the real flights data")
    demo_parser.add_argument("--through", type=iso_date, default="2013-11-30", help="last day landed before training")
    demo_parser.set_defaults(handler=demo)
    models_commands.register(commands)
    predict_commands.register(commands)
    online_commands.register(commands)
    doctor_commands.add_parser(commands)
    monitor_commands.add_parser(commands)
    stream_commands.add_parser(commands)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Each command's parser sets ``prog`` ("fti features run"), the name its error line starts with."""
    parser.set_defaults(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _name_commands(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(monitor_commands.route(list(sys.argv[1:] if argv is None else argv)))
    debug = args.debug or os.environ.get("FTI_DEBUG", "").strip() not in ("", "0")
    try:
        with contextlib.nullcontext() if debug else _prefect_console_without_tracebacks():
            return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one error path: every failure ends here
        code, line = failure(error)
        if debug:
            traceback.print_exception(error)
        else:
            print(f"{args.prog}: error: {line}", file=sys.stderr)
        return code


def failure(error: BaseException) -> tuple[int, str]:
    """The exit code and the one line of a command's failure.

    A flow's failure is the exception inside it. A ValueError of ours (CatalogError, RegistryError, the
    commands' UsageError, ..., or one our code raised) is about what was asked: exit 2. Anything else failed
    while running: exit 1; HomeBusy (models_ml.core.home_lock) says who holds the home. Our messages are
    written to be read as they are; any other gets its type's name in front.
    """
    error = _inside_flow(error)
    ours = type(error).__module__.split(".")[0] in _OUR_PACKAGES or (
        isinstance(error, ValueError) and _raised_by_us(error))
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = "; ".join(lines) or type(error).__name__
    if not ours:
        text = f"{type(error).__name__}: {text} (--debug shows the traceback)"
    if len(text) > _LONGEST_LINE:
        text = text[:_LONGEST_LINE] + " … (--debug shows all of it)"
    return (USAGE if ours and isinstance(error, ValueError) else FAILURE), text


def _raised_by_us(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in one of our packages."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    path = Path(frames[-1].filename).resolve()
    return any(path.is_relative_to(_ROOT / package) for package in _OUR_PACKAGES)


def _inside_flow(error: BaseException) -> BaseException:
    """The exception a Prefect flow or task failed with, rather than Prefect's own wrapper of it."""
    seen = {id(error)}
    current: BaseException | None = error
    while current is not None and type(current).__module__.startswith("prefect"):
        current = current.__cause__ or current.__context__
        if current is None or id(current) in seen:
            return error
        seen.add(id(current))
    return current or error


class _WithoutTraceback(logging.Filter):
    """Prefect's console shows a failed task's or flow's log line without the traceback under it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("prefect"):
            record.exc_info, record.exc_text = None, None  # the API's handler, which ran first, kept them
        return True


@contextlib.contextmanager
def _prefect_console_without_tracebacks() -> Iterator[None]:
    """Keep Prefect's tracebacks off the console while a command runs (the command ends with one line).

    Prefect configures its console handler (on the root logger) when it is first imported, inside the
    handler, so the filter goes on when Prefect logs its first failure: the record factory watches for it.
    """
    quiet, make = _WithoutTraceback(), logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if record.exc_info and record.name.startswith("prefect"):
            for handler in logging.getLogger().handlers:
                if type(handler).__name__ == "PrefectConsoleHandler" and quiet not in handler.filters:
                    handler.addFilter(quiet)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(quiet)


if __name__ == "__main__":
    sys.exit(main())
