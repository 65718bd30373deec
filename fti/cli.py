"""The `fti` command: inspect the feature store, run the pipelines, run the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fti.text import table, when
from models_ml.core.settings import load_settings
from models_ml.definitions.catalog import CatalogError, FeatureGroup, load_catalog
from models_ml.features.stats import read_group_stats


def features_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.home)
    catalog = load_catalog(settings, refresh=args.refresh)
    groups = sorted(catalog.groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    rows = []
    for ((name, version), group), stats in zip(groups, read_group_stats(settings, [g for _, g in groups])):
        rows.append([
            name, f"v{version}", ",".join(group.entity), group.event_time, str(group.ttl or "-"),
            "yes" if group.online else "no", str(len(group.features)),
            f"{stats.row_count:,}" if stats.row_count is not None else "not built",
            when(stats.latest_event_at),
        ])
    print(table(rows, ["group", "version", "entity", "event time", "ttl", "online", "features", "rows",
                        "latest event"]))
    if catalog.views:
        print()
        print(table(
            [[v.name, f"v{v.version}", v.label.model, v.label.target,
              v.inference_spine.model if v.inference_spine else "- (label model)", str(len(v.feature_columns)),
              ", ".join(f"{g}:v{ver}" for g, ver in v.group_versions().items())] for v in catalog.views.values()],
            ["feature view", "version", "label model", "target", "inference spine", "features", "groups"],
        ))
    if catalog.domains:
        print()
        print(table([[d.name, ", ".join(d.sources), d.loader] for d in sorted(catalog.domains.values(),
                                                                            key=lambda d: d.name)],
                    ["domain", "dbt sources", "loader"]))
    return 0


def _show_group(settings, group: FeatureGroup) -> None:
    (stats,) = read_group_stats(settings, [group])
    print(f"{group.name} v{group.version} (latest v{group.latest_version})  {group.qualified_relation}")
    print(f"  {group.description}")
    print(f"  entity: {', '.join(group.entity)}   event time: {group.event_time}   "
          f"created time: {group.created_time or '-'}   ttl: {group.ttl or 'none'}   online: {group.online}")
    print(f"  rows: {stats.row_count if stats.row_count is not None else 'not built'}   "
          f"latest event: {when(stats.latest_event_at)}   latest load: {when(stats.latest_loaded_at)}")
    print()
    print(table([[f.name, f.data_type, f.description] for f in group.features], ["feature", "type", "description"]))


def features_show(args: argparse.Namespace) -> int:
    settings = load_settings(args.home)
    catalog = load_catalog(settings, refresh=args.refresh)
    if args.name in catalog.views:
        view = catalog.views[args.name]
        print(f"feature view {view.name} v{view.version}: {view.description}")
        print(f"  training spine: {view.label.qualified_relation} at {view.label.spine_time}, "
              f"target {view.label.target}")
        scored = view.inference_spine.qualified_relation if view.inference_spine else "the label model"
        print(f"  inference spine: {scored}, windowed on {view.label.event_time}")
        rows = [[c, "request", view.label.model] for c in view.label.request_features]
        for ref in view.features:
            rows += [[ref.output_name(f), ref.group.feature(f).data_type, f"{ref.group.name} v{ref.group.version}"]
                     for f in ref.features]
        rows += [[f.name, "double", f"on demand: {f.function}({', '.join(f.inputs.values())})"] for f in view.on_demand]
        print(table(rows, ["feature", "type", "from"]))
        return 0
    _show_group(settings, catalog.group(args.name, args.version))
    return 0


def features_run(args: argparse.Namespace) -> int:
    from flows.feature_pipeline import feature_pipeline

    args.domain = load_catalog(load_settings(args.home)).domain(args.domain).name  # checked before the flow
    result = feature_pipeline(through=args.through, full_refresh=args.full_refresh, home=args.home,
                              domain=args.domain)
    print(table([[t, f"{n:,}"] for t, n in sorted(result["rows_built"].items())], ["table", "rows"]))
    return 0


def demo(args: argparse.Namespace) -> int:
    from fti.demo import run_demo

    return run_demo(load_settings(args.home), through=args.through)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fti", description=__doc__)
    parser.add_argument("--home", help="state directory (default: $FTI_HOME or ./.fti)")
    commands = parser.add_subparsers(dest="command", required=True)

    features = commands.add_parser("features", help="feature groups and views").add_subparsers(
        dest="features_command", required=True
    )
    listing = features.add_parser("list", help="every feature group and feature view")
    listing.add_argument("--refresh", action="store_true", help="re-parse the dbt project first")
    listing.set_defaults(handler=features_list)
    show = features.add_parser("show", help="one feature group (or view): features, types, freshness")
    show.add_argument("name")
    show.add_argument("--version", type=int)
    show.add_argument("--refresh", action="store_true")
    show.set_defaults(handler=features_show)
    run = features.add_parser("run", help="run the feature pipeline flow (land + dbt build)")
    run.add_argument("--through", help="land raw data through this ISO date (default: next day)")
    run.add_argument("--full-refresh", action="store_true")
    run.add_argument("--domain", help="whose raw data to land and build (a domain declared with its dbt sources, "
                                      "see `fti features list`; default: the only one)")
    run.set_defaults(handler=features_run)

    demo_parser = commands.add_parser("demo", help="the end-to-end demo on the real flights data")
    demo_parser.add_argument("--through", default="2013-11-30", help="last day landed before training")
    demo_parser.set_defaults(handler=demo)

    from fti import models_commands as cli_models
    from fti import online_commands as cli_online
    from fti import predict_commands as cli_predict
    cli_models.register(commands)
    cli_predict.register(commands)
    cli_online.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CatalogError as error:
        print(f"fti: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
