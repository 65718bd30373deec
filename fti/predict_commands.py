"""`fti predict`: run the batch-inference flow for a day (or days) and print what it wrote.

Registered on the main parser by :func:`register`; the command sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse

from fti.text import iso_date, positive_int, table, time_zone


def predict(args: argparse.Namespace) -> int:
    from fti.models_commands import model_version
    from models_ml.core.home_lock import hold_home
    from models_ml.core.settings import load_settings

    settings = load_settings(args.home)
    args.model = model_version(settings, args.model, args.alias).model_name  # before the flow
    with hold_home(settings, args.prog):  # a busy home fails here, before Prefect starts; the flow nests
        from flows.batch_inference import batch_inference

        result = batch_inference(day=args.day, days=args.days, model=args.model, alias=args.alias,
                                 home=args.home, timezone=args.timezone)
    start, end = result["window"]
    mean = "-" if result["mean_score"] is None else f"{result['mean_score']:.4f}"
    print(f"{result['model_name']} v{result['model_version']} ({result['alias']}), feature view "
          f"{result['feature_view']} v{result['feature_view_version']}")
    print(f"  window      [{start[:16]}, {end[:16]}) UTC on the event time")
    print(f"  rows scored {result['rows']:,}   flagged (a feature group missing) {result['flagged_rows']:,}   "
          f"mean score {mean}")
    for group, count in result["missing_by_group"].items():
        print(f"    missing {group}: {count:,}")
    print(f"  written to  {result['table']} ({result['deleted']:,} previous rows replaced)")
    return 0


def outcomes(args: argparse.Namespace) -> int:
    from fti.models_commands import model_version
    from fti.text import UsageError
    from models_ml.core.settings import load_settings
    from models_ml.definitions.catalog import load_catalog
    from models_ml.definitions.pinning import pin_view
    from models_ml.inference.batch.outcomes import daily_outcomes
    from models_ml.inference.batch.predict import predictions_relation
    from models_ml.offline.store import opened

    settings = load_settings(args.home)
    version = model_version(settings, args.model, args.alias)
    name = version.model_name
    view = pin_view(load_catalog(settings), version)
    relation = predictions_relation(name, args.alias)
    with opened(settings, read_only=True) as store:
        if not store.exists(*relation):
            raise UsageError(f"--model: no predictions table {'.'.join(relation)} yet; run "
                             f"`fti predict --model {name}` first")
        days = daily_outcomes(store, view, relation, args.timezone)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'.'.join(relation)} joined to {view.label.qualified_relation} on {', '.join(view.label.entity)}")
    print(table([[str(d.day), f"{d.scored:,}", f"{d.with_outcome:,}", f"{d.mean_score:.3f}", fmt(d.actual_rate),
                  fmt(d.roc_auc)] for d in days],
                [f"day ({args.timezone})", "scored", "with outcome", "mean score", "actual rate", "ROC-AUC"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fti predict` and `fti outcomes` to the main parser's subcommands."""
    parser = subparsers.add_parser(
        "predict", help="score a window of the inference spine with the champion into predictions.<model>",
        description="Score the inference spine's rows (what is to be scored, known before the outcome) whose "
                    "event time (UTC) falls in [day, day + days) and replace those days' rows of "
                    "predictions.<model>. Rows with missing feature groups are scored and flagged; a window "
                    "with nothing to score fails (exit 2).",
    )
    parser.add_argument("--day", type=iso_date,
                        help="first UTC day to score (default: the first day with unscored rows)")
    parser.add_argument("--days", type=positive_int, default=1, help="number of days (default 1)")
    parser.add_argument("--timezone", default="UTC", type=time_zone,
                        help="whose calendar days --day and --days are (IANA name, e.g. America/New_York; "
                             "default UTC)")
    parser.add_argument("--model", help="registered model name (default: the only one registered)")
    parser.add_argument("--alias", default="champion",
                        help="alias or version to score with (default champion; another alias writes "
                             "predictions.<model>__<alias>)")
    parser.set_defaults(handler=predict)

    outcome = subparsers.add_parser(
        "outcomes", help="predictions joined to their outcomes, per day: scored, known, ROC-AUC",
        description="Join predictions.<model> to the label model on the entity keys, per UTC day of the event "
                    "time: rows scored, rows whose outcome is known yet, mean score, actual rate and ROC-AUC.",
    )
    outcome.add_argument("--model", help="registered model name (default: the only one registered)")
    outcome.add_argument("--alias", default="champion", help="whose predictions table (default champion)")
    outcome.add_argument("--timezone", default="UTC", type=time_zone,
                         help="whose calendar days (IANA name; default UTC)")
    outcome.set_defaults(handler=outcomes)
