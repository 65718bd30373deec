"""`fti monitor NAME`: everything monitoring computes for a model (drift, performance, freshness, alerts),
its report, and (with --retrain) the retraining trigger, as the monitoring flow runs it; `fti monitor drift`: drift of a model version's batch predictions (per day) or online predictions (per
hour) against its training reference; `fti monitor performance`: its batch predictions against the
outcomes known so far, per day.

Added to the main parser by :func:`add_parser`; the handler imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt

from fti.text import UsageError, iso_date, num, positive_int, table, time_zone


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number (like 0.1)")
    return value


def drift(args: argparse.Namespace) -> int:
    from fti.models_commands import model_version
    from models_ml.core.settings import load_settings
    from models_ml.monitoring.pipeline import compute_drift

    if args.warn > args.alert:
        raise UsageError(f"--warn: {args.warn} is above --alert {args.alert}; give a warning level at or below "
                         f"the alert level")
    if args.bins < 2:
        raise UsageError(f"--bins: {args.bins} bin cannot show a shift; give at least 2 (default 10)")
    first, last = _days(args)
    settings = load_settings(args.home)
    version = model_version(settings, args.model, args.version, ref_flag="--version")
    run = compute_drift(settings, version.model_name, version.version, source="online" if args.online else "batch",
                        first_day=first, last_day=last, zone=args.timezone, bins=args.bins,
                        rebuild_reference=args.rebuild_reference)
    reference = run.reference
    part = (f"train split (spine time before {reference.spine_time_before:%Y-%m-%d %H:%M} UTC)"
            if reference.part == "train" else "whole snapshot (no split recorded)")
    unit, on = ("UTC hours", "%Y-%m-%d %H:%M") if args.online else (f"days ({args.timezone})", "%Y-%m-%d")
    print(f"{run.model_name} v{run.version}: {run.source} predictions from {run.origin}, {len(run.windows)} "
          f"{unit} from {run.windows[0].start:%Y-%m-%d %H:%M} to {run.windows[-1].end:%Y-%m-%d %H:%M} UTC")
    print(f"  reference  {part} of {reference.snapshot_id}, {reference.rows:,} rows"
          f"{' (built now)' if reference.built_now else ''}")
    print(f"  written    {run.written.inserted:,} rows to monitoring.feature_drift "
          f"({run.written.deleted:,} earlier rows of these windows replaced)")
    levels = [f.level(args.warn, args.alert) for f in run.features]
    rows = [[f.feature, f.kind or "-", f"{f.rows:,}", num(f.psi, 3),
             f.psi_window.strftime(on) if f.psi_window else "-", num(f.ks, 3), num(f.missing_change, 3),
             num(f.out_of_range, 3), num(f.unseen, 3), level if level == "ok" else level.upper()]
            for f, level in zip(run.features, levels)]
    print(table(rows, ["feature", "kind", "rows", "max PSI", "on", "max KS", "max |Δmissing|", "out of range",
                       "unseen", "level"]))
    flagged = [level for level in levels if level != "ok"]
    print(f"{len(flagged)} of {len(run.features)} flagged (PSI ≥ {args.warn:g} warn, ≥ {args.alert:g} alert)")
    return 0


def performance(args: argparse.Namespace) -> int:
    from fti.models_commands import model_version
    from models_ml.core.settings import load_settings
    from models_ml.monitoring.pipeline import compute_performance
    from models_ml.training.registry import get_metrics

    first, last = _days(args)
    settings = load_settings(args.home)
    version = model_version(settings, args.model, args.version, ref_flag="--version")
    run = compute_performance(settings, version.model_name, version.version, first_day=first, last_day=last,
                              zone=args.timezone)
    print(f"{run.model_name} v{run.version}: {run.origin} joined to its outcomes, {len(run.windows)} days "
          f"({args.timezone}); slices {', '.join(run.slices) or 'none'}")
    print(f"  written    {run.written.inserted:,} rows to monitoring.performance "
          f"({run.written.deleted:,} earlier rows of these days replaced)")
    names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece"]
    rows = []
    for window in run.windows:
        m = run.by_window.get(window.start, {})
        rows.append([f"{window.start:%Y-%m-%d}", f"{int(m.get('scored', 0)):,}", f"{int(m.get('labelled', 0)):,}",
                     num(m.get("label_share"), 2), *(num(m.get(n), 4) for n in names)])
    test = get_metrics(settings, run.model_name, run.version).get("test", {})
    rows.append(["test split", f"{int(test.get('rows') or 0):,}", f"{int(test.get('rows') or 0):,}", "1.00",
                 *(num(test.get(n), 4) for n in names)])
    print(table(rows, ["day", "scored", "labelled", "share", "ROC-AUC", "PR-AUC", "log loss", "Brier", "ECE"]))
    return 0


def model_run(args: argparse.Namespace) -> int:
    from fti.models_commands import model_version
    from flows.monitoring import monitoring
    from models_ml.core.settings import load_settings

    settings = load_settings(args.home)
    version = model_version(settings, args.model, args.version, ref_flag="--version")
    result = monitoring(model=version.model_name, days=args.days, home=str(settings.home), retrain=args.retrain,
                        version=str(version.version), timezone=args.timezone)
    span = [dt.datetime.fromisoformat(t) for t in result["span"]]
    print(f"{result['model']} v{result['version']}: monitored {span[0]:%Y-%m-%d %H:%M} to {span[1]:%Y-%m-%d %H:%M} UTC")
    drifted = [f for f in result["drift"] if f["psi"] is not None][:args.top]
    print(table([[f["feature"], num(f["psi"], 3), num(f["ks"], 3), (f["window"] or "-")[:16]] for f in drifted],
                ["feature (worst PSI first)", "max PSI", "max KS", "on"]))
    e = result["evaluated"]
    print(f"performance: {e['days']} evaluated day(s), {e['labelled']:,} labelled rows, ROC-AUC {num(e['roc_auc'])} "
          f"(test split {num(e['test_roc_auc'])})")
    stale = [f"{g['group']} v{g['version']} {g['level']}" for g in result["freshness"] if g["level"] in ("warn", "error")]
    print(f"freshness: {len(result['freshness'])} group(s), {', '.join(stale) if stale else 'none stale'}")
    print(table([[a["severity"], a["kind"], a["subject"], "yes" if a["retrain"] else "no", a["message"]]
                 for a in result["alerts"]], ["severity", "kind", "subject", "retrains", "message"])
          if result["alerts"] else "alerts: none")
    print(f"retraining: {result['retrain']}"
          + ("" if args.retrain or result["retrain"] == "not called for" else " (--retrain starts it)"))
    print(f"report: {result['report']}")
    return 0


SUBCOMMANDS = ("drift", "performance", "run")


def route(argv: list[str]) -> list[str]:
    """``fti [options] monitor NAME ...`` as ``fti [options] monitor run NAME ...``: a model's name where a
    subcommand is expected means the whole monitoring run of that model."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):  # the global options (--home takes a value)
        i += 2 if argv[i] == "--home" else 1
    if i + 1 < len(argv) and argv[i] == "monitor" and not argv[i + 1].startswith("-") \
            and argv[i + 1] not in SUBCOMMANDS:
        return [*argv[:i + 1], "run", *argv[i + 1:]]
    return argv


def _days(args: argparse.Namespace) -> tuple[dt.date | None, dt.date | None]:
    """--from and --to as dates (None when not given), refused when the last comes before the first."""
    first = dt.date.fromisoformat(args.first) if args.first else None
    last = dt.date.fromisoformat(args.last) if args.last else None
    if first and last and last < first:
        raise UsageError(f"--to: {last} is before --from {first}; give the last day on or after the first")
    return first, last


def _model_and_days(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--model", help="registered model name (default: the only one registered)")
    parser.add_argument("--version", default="champion", help="version number, alias or latest (default champion)")
    parser.add_argument("--from", dest="first", type=iso_date, metavar="DAY",
                        help=f"first day (default: its first {what})")
    parser.add_argument("--to", dest="last", type=iso_date, metavar="DAY",
                        help=f"last day, inclusive (default: its last {what})")
    parser.add_argument("--timezone", default="UTC", type=time_zone,
                        help="whose calendar days the windows are (IANA name; default UTC)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `monitor` (`monitor NAME`, `monitor drift`, `monitor performance`) to the `fti` command."""
    monitor = subparsers.add_parser(
        "monitor", help="monitor registered models: drift, performance as outcomes arrive, freshness, alerts",
        description="Monitor registered models. `fti monitor NAME [--days N]` runs everything for the model "
                    "(the same as `fti monitor run NAME`); `drift` and `performance` run one part.")
    commands = monitor.add_subparsers(dest="monitor_command", required=True)
    whole = commands.add_parser(
        "run", help="NAME: drift, performance, freshness and alerts over the last days, and the report",
        description="Monitor a model over the last days it scored (default: its view's monitoring.days): drift "
                    "of every input and the score against its reference, performance on the outcomes known so "
                    "far, the freshness of its feature groups, the alerts against the view's thresholds "
                    "(meta.fti.monitoring), all written to the monitoring schema; print a summary and write the "
                    "report (FTI_HOME/reports/monitoring/<model>/v<version>/report.md). An alert that calls for "
                    "retraining starts the training of the view only with --retrain (as the daily deployment "
                    "does); the new version goes through the usual gate and is never promoted here.")
    whole.add_argument("model", help="registered model name")
    whole.add_argument("--version", default="champion", help="version number, alias or latest (default champion)")
    whole.add_argument("--days", type=positive_int, help="how many of the last scored days (default: the view's)")
    whole.add_argument("--retrain", action="store_true",
                       help="start the training when an alert calls for it (once per monitored span)")
    whole.add_argument("--timezone", default="UTC", type=time_zone,
                       help="whose calendar days the windows are (IANA name; default UTC)")
    whole.add_argument("--top", type=positive_int, default=10, help="drifting features printed (default 10)")
    whole.set_defaults(handler=model_run)
    parser = commands.add_parser(
        "drift", help="drift of each input and the score per day, into monitoring.feature_drift",
        description="Compare the rows a model version scored in batch, per day (or online, per hour, with "
                    "--online), with its reference (the train "
                    "split of its training snapshot, scored once): PSI, KS, missing-rate change, out-of-range "
                    "and unseen shares per input and for the score, computed in the warehouse and written to "
                    "monitoring.feature_drift (re-running a day replaces its rows). Prints the worst value of "
                    "each statistic per feature.",
    )
    _model_and_days(parser, "scored day")
    parser.add_argument("--online", action="store_true",
                        help="the online service's prediction log, per UTC hour, instead of batch predictions")
    parser.add_argument("--warn", type=_share, default=0.1, help="PSI from which a feature is flagged WARN (0.1)")
    parser.add_argument("--alert", type=_share, default=0.25, help="PSI from which a feature is flagged ALERT (0.25)")
    parser.add_argument("--bins", type=positive_int, default=10,
                        help="reference-quantile bins of numeric PSI (default 10)")
    parser.add_argument("--rebuild-reference", action="store_true",
                        help="score and profile the reference again (it is built once per version otherwise)")
    parser.set_defaults(handler=drift)

    scored = commands.add_parser(
        "performance", help="ROC-AUC, PR-AUC, log loss, Brier, ECE per day as outcomes arrive",
        description="Join the rows a model version scored in batch to the outcomes known so far (the view's "
                    "label model), per day and per slice, and write the metrics to monitoring.performance "
                    "(re-running a day replaces its rows, so days whose outcomes came late are brought up to "
                    "date). Prints the days beside the version's test-split figures.",
    )
    _model_and_days(scored, "scored day")
    scored.set_defaults(handler=performance)
