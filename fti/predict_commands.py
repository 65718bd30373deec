"""`fti predict`: run the batch-inference flow for a day (or days) and print what it wrote.

Registered on the main parser by :func:`register`; the command sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys


def _iso_day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date like 2013-12-01") from error


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def predict(args: argparse.Namespace) -> int:
    from flows.batch_inference import batch_inference
    from models_ml.inference.batch.predict import PredictionError
    from models_ml.training.registry import RegistryError

    try:
        result = batch_inference(day=args.day, days=args.days, model=args.model, alias=args.alias,
                                 home=args.home)
    except (PredictionError, RegistryError) as error:
        print(f"fti: {error}", file=sys.stderr)
        return 2
    start, end = result["window"]
    mean = "-" if result["mean_score"] is None else f"{result['mean_score']:.4f}"
    print(f"{result['model_name']} v{result['model_version']} ({result['alias']}), feature view "
          f"{result['feature_view']} v{result['feature_view_version']}")
    print(f"  window      [{start[:10]}, {end[:10]}) UTC on the scheduled (event) time")
    print(f"  rows scored {result['rows']:,}   flagged (a feature group missing) {result['flagged_rows']:,}   "
          f"mean score {mean}")
    for group, count in result["missing_by_group"].items():
        print(f"    missing {group}: {count:,}")
    print(f"  written to  {result['table']} ({result['deleted']:,} previous rows replaced)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fti predict` to the main parser's subcommands."""
    parser = subparsers.add_parser(
        "predict", help="score a day's flights with the champion into predictions.<model> (batch inference flow)",
        description="Score the spine rows whose event time (UTC) falls in [day, day + days) and replace those "
                    "days' rows of predictions.<model>. Rows with missing feature groups are scored and flagged.",
    )
    parser.add_argument("--day", type=_iso_day,
                        help="first UTC day to score (default: the first day with unscored rows)")
    parser.add_argument("--days", type=_positive, default=1, help="number of days (default 1)")
    parser.add_argument("--model", default="flight_delay", help="registered model name (default flight_delay)")
    parser.add_argument("--alias", default="champion",
                        help="alias or version to score with (default champion; another alias writes "
                             "predictions.<model>__<alias>)")
    parser.set_defaults(handler=predict)
