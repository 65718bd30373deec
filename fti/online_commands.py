"""`fti online materialize`, `fti online publish` and `fti serve`: the online store and the inference service.

Registered on the main parser by :func:`register`; each command sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse

from fti.text import UsageError, did_you_mean, listed, pick

_STORE_HELP = "online store name (sqlite, or redis with FTI_REDIS_URL; default: $FTI_ONLINE_STORE or sqlite)"


def _store(flag: str, name: str | None) -> str | None:
    """``name`` if it is a registered online store (models_ml.inference.online.store.STORES)."""
    if name is None:
        return None
    from models_ml.inference.online.store import STORES

    return pick(flag, name, sorted(STORES), "online store")


def _groups(settings, names: list[str] | None) -> list[str] | None:
    """``--group`` names (``name`` or ``name:vN``), each an online feature group of the catalog."""
    if not names:
        return names
    from models_ml.definitions.catalog import load_catalog
    from models_ml.inference.online.materialize import online_groups
    from models_ml.inference.online.store import group_id

    online = online_groups(load_catalog(settings))
    known, ids = sorted({g.name for g in online}), {group_id(g.name, g.version) for g in online}
    for name in names:
        if name not in known and name not in ids:
            raise UsageError(f"--group: no online feature group {name!r}{did_you_mean(name.split(':')[0], known)} "
                             f"(known: {listed(known)}; name a version as NAME:v1)")
    return names


def _share(text: str) -> float:
    """A canary share: a number from 0 to 1 (argparse turns the ValueError into a usage error)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1 (0.1 sends a tenth of the entities "
                                         f"to the challenger)")
    return value


def materialize(args: argparse.Namespace) -> int:
    from models_ml.core.home_lock import hold_home
    from models_ml.core.settings import load_settings

    settings = load_settings(args.home)
    args.store, args.group = _store("--store", args.store), _groups(settings, args.group)  # before the flow

    with hold_home(settings, args.prog):  # a busy home fails here, before Prefect starts; the flow nests
        from flows.online_materialization import online_materialization

        result = online_materialization(store=args.store, groups=args.group, full_refresh=args.full_refresh,
                                        publish_champions=not args.no_publish, home=args.home)
    print(f"online store ({result['store']}) refreshed at {result['materialized_at'][:19]} UTC")
    header = f"  {'group':<32}{'mode':<13}{'rows read':>10}{'written':>9}{'entities':>10}  latest event (UTC)"
    print(header)
    for g in result["groups"]:
        f = g["freshness"] or {}
        print(f"  {g['group']:<32}{g['mode']:<13}{g['source_rows']:>10,}{g['rows_written']:>9,}"
              f"{f.get('entities', 0):>10,}  {(f.get('latest_event_at') or '-')[:19]}")
    for p in result["published"]:
        print(f"  published {p['model']} champion v{p['version']} -> {p['pointer']}")
    return 0


def publish(args: argparse.Namespace) -> int:
    from fti.models_commands import CHAMPION, model_version
    from models_ml.core.settings import load_settings
    from models_ml.training import registry

    settings = load_settings(args.home)
    if args.model:
        model_version(settings, args.model, CHAMPION, ref_flag="--model")
        pointers = [registry.publish_champion(settings, args.model)]
        challengers = [p for p in [registry.publish_challenger(settings, args.model)] if p is not None]
    else:
        pointers = registry.publish_champions(settings)
        challengers = registry.publish_challengers(settings)
    for p in pointers:
        print(f"published {p.model_name} champion v{p.version} -> {p.path}")
    for p in challengers:
        print(f"published {p.model_name} challenger v{p.version} -> {p.path}")
    return 0


def serve(args: argparse.Namespace) -> int:
    import logging

    from models_ml.core.settings import load_settings
    from models_ml.inference.online.serving.config import ServeConfig, read_token_file

    settings = load_settings(args.home)
    store = _store("--store", args.store)
    if store:
        settings = settings.with_online_store(store)
    host, port = args.host or settings.serve_host, args.port or settings.serve_port
    try:
        config = ServeConfig.from_env(
            token=read_token_file(args.token_file) if args.token_file else None,
            max_body_bytes=args.max_body_bytes, max_header_bytes=args.max_header_bytes,
            max_connections=args.max_connections, max_in_flight=args.max_in_flight,
            timeout_keep_alive=args.timeout_keep_alive, timeout_request=args.timeout_request,
            max_age_days=args.log_max_age_days, max_rows=args.log_max_rows, max_bytes=args.log_max_bytes,
            min_free_bytes=args.log_min_free_bytes, canary_share=args.canary, shadow=args.shadow or None,
            shadow_queue=args.shadow_queue, workers=args.workers)
    except ValueError as error:
        raise UsageError(str(error)) from None

    from models_ml.inference.online.serving.workers import serve as run

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    variants = (f", challenger as canary for {config.canary_share:.0%} of entities" if config.canary_share
                else ", challenger in shadow" if config.shadow else "")
    variants += f", {config.workers} worker processes" if config.workers > 1 else ""
    print(f"fti serve: {settings.online_store} store, models under {settings.models_dir}{variants}, "
          f"http://{host}:{port} (Ctrl-C to stop)", flush=True)
    # serve() warns (logging) when binding beyond loopback without a token.
    return run(settings, host=host, port=port, models=args.model, log_level=args.log_level, config=config)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `fti online ...` and `fti serve` to the main parser's subcommands."""
    online = subparsers.add_parser("online", help="the online store").add_subparsers(
        dest="online_command", required=True)
    run = online.add_parser(
        "materialize", help="refresh the online store from the warehouse (online-materialization flow)",
        description="Read the rows loaded since each online feature group's watermark, keep the latest per entity, "
                    "merge them into the online store and record freshness; then publish the champion pointers.")
    run.add_argument("--store", help=_STORE_HELP)
    run.add_argument("--group", action="append", help="only this group (name or name:vN; repeatable)")
    run.add_argument("--full-refresh", action="store_true", help="re-read every row, not only new ones")
    run.add_argument("--no-publish", action="store_true", help="do not publish the champion pointers")
    run.set_defaults(handler=materialize)
    pub = online.add_parser("publish", help="publish the champion (and challenger) pointers the inference service "
                                            "reads")
    pub.add_argument("--model", help="only this model (default: every model with a champion)")
    pub.set_defaults(handler=publish)

    srv = subparsers.add_parser(
        "serve", help="the online inference service (HTTP, uvicorn)",
        description="Serve POST /predict/<model>, /predict/<model>/batch, GET /health and /metrics from the online "
                    "store and the published champions. Never opens the warehouse.")
    srv.add_argument("--host", help="address to bind (default: $FTI_SERVE_HOST or 127.0.0.1)")
    srv.add_argument("--port", type=int, help="port (default: $FTI_SERVE_PORT or 8000)")
    srv.add_argument("--store", help=_STORE_HELP)
    srv.add_argument("--model", action="append", help="serve only this model (repeatable; default all published)")
    srv.add_argument("--workers", type=int, metavar="N",
                     help="service processes on the one port, each with its own store connection, model and "
                          "prediction log writer; /metrics adds them up ($FTI_SERVE_WORKERS, 1)")
    srv.add_argument("--log-level", default="warning", type=str.lower,
                     choices=["debug", "info", "warning", "error", "critical"])
    limits = srv.add_argument_group(
        "limits and access", "Each default comes from the environment variable named (see "
                             "models_ml/inference/online/serving/config.py); 0 turns a prediction-log limit off.")
    limits.add_argument("--token-file", help="require 'Authorization: Bearer <first line of this file>' on predict, "
                                             "/health/details and /metrics ($FTI_SERVE_TOKEN_FILE, or the token "
                                             "itself in $FTI_SERVE_TOKEN; default: no token)")
    limits.add_argument("--max-body-bytes", type=int, help="largest request body, else 413 "
                                                           "($FTI_SERVE_MAX_BODY_BYTES, 1048576)")
    limits.add_argument("--max-header-bytes", type=int, help="largest request head, else 431 "
                                                             "($FTI_SERVE_MAX_HEADER_BYTES, 16384)")
    limits.add_argument("--max-connections", type=int, help="open connections plus queued requests, else 503 "
                                                            "($FTI_SERVE_MAX_CONNECTIONS, 1000)")
    limits.add_argument("--max-in-flight", type=int, help="prediction requests read or answered at once, else 503 "
                                                          "($FTI_SERVE_MAX_IN_FLIGHT, 64)")
    limits.add_argument("--timeout-keep-alive", type=float, help="seconds an idle connection is kept "
                                                                 "($FTI_SERVE_TIMEOUT_KEEP_ALIVE, 30)")
    limits.add_argument("--timeout-request", type=float, help="seconds to receive one request, else 408 "
                                                              "($FTI_SERVE_TIMEOUT_REQUEST, 10)")
    limits.add_argument("--log-max-age-days", type=float, help="prediction log rows kept this many days "
                                                               "($FTI_PREDICTION_LOG_MAX_AGE_DAYS, 30)")
    limits.add_argument("--log-max-rows", type=int, help="prediction log rows kept "
                                                         "($FTI_PREDICTION_LOG_MAX_ROWS, 5000000)")
    limits.add_argument("--log-max-bytes", type=int, help="prediction log size kept "
                                                          "($FTI_PREDICTION_LOG_MAX_BYTES, 2 GiB)")
    limits.add_argument("--log-min-free-bytes", type=int, help="free disk below which the prediction log pauses "
                                                               "($FTI_PREDICTION_LOG_MIN_FREE_BYTES, 256 MiB)")
    challenger = srv.add_argument_group(
        "challenger", "Serve each model's challenger (its published challenger.json: `fti models promote NAME N "
                      "--alias challenger`) beside the champion, one way at a time; `fti models compare NAME` decides.")
    challenger.add_argument("--canary", type=_share, metavar="SHARE",
                            help="the challenger answers this share (0 to 1) of entities, chosen by a stable hash of "
                                 "the entity key ($FTI_SERVE_CANARY_SHARE, 0)")
    challenger.add_argument("--shadow", action="store_true",
                            help="the champion answers; the challenger scores every request off the request path "
                                 "($FTI_SERVE_SHADOW=1)")
    challenger.add_argument("--shadow-queue", type=int, metavar="N",
                            help="shadow jobs waiting at most, beyond which they are dropped and counted "
                                 "($FTI_SERVE_SHADOW_QUEUE, 1000)")
    srv.set_defaults(handler=serve)
