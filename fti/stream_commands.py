"""`fti stream consume`: run the streaming feature pipeline (a service: keep it running); `fti stream land`:
land the consumer's hand-off files into the warehouse now (the feature pipeline run does it otherwise).

Added to the main parser by :func:`add_parser`; the handlers import what they need when they run.
"""

from __future__ import annotations

import argparse


def consume(args: argparse.Namespace) -> int:
    from models_ml.streaming.consumer import main

    argv = ["--redis-url", args.redis_url, "--stream", args.stream, "--group", args.group,
            "--consumer", args.consumer, "--count", str(args.count)]
    if args.home:
        argv += ["--home", str(args.home)]
    if args.online_store:
        argv += ["--online-store", args.online_store]
    return main(argv)


def land(args: argparse.Namespace) -> int:
    from models_ml.core.home_lock import hold_home
    from models_ml.core.settings import load_settings
    from models_ml.offline.store import opened
    from models_ml.features.inbox import land_inbox
    from models_ml.streaming.handoff import handoff_dir

    settings = load_settings(args.home)
    with hold_home(settings, "stream land"), opened(settings) as store:
        report = land_inbox(store, handoff_dir(settings))
    print(f"landed {report.total_rows} rows from {len(report.batches)} hand-off files")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `stream` (with `stream consume` and `stream land`) to the `fti` command."""
    stream = subparsers.add_parser("stream", help="streaming feature pipeline over a Redis stream",
                                   description="Streaming feature pipeline over a Redis stream.")
    commands = stream.add_subparsers(dest="stream_command", required=True)
    parser = commands.add_parser("consume", help="consume the event stream into the online store (a service)")
    parser.add_argument("--redis-url", required=True, help="the Redis server holding the stream")
    parser.add_argument("--stream", default="fraud:events")
    parser.add_argument("--group", default="features")
    parser.add_argument("--consumer", default="consumer-1", help="this consumer's name in the group")
    parser.add_argument("--count", type=int, default=2_000, help="entries per micro-batch at most")
    parser.add_argument("--online-store", default=None, help="sqlite or redis (default: FTI_ONLINE_STORE)")
    parser.set_defaults(handler=consume)
    parser = commands.add_parser("land", help="land the consumer's hand-off files into the warehouse now")
    parser.set_defaults(handler=land)
