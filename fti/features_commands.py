"""`fti features list|show|run`: the feature groups, views and domains of the project (every version of
each: a view's versions with the group versions they read, a group's with the models using them), and the
feature pipeline flow.

Registered on the main parser by :func:`register`; each command sets ``handler`` (``args -> exit code``)
and imports the catalog (and dbt, DuckDB) only when it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt

from fti.text import UsageError, did_you_mean, duration, group_versions, iso_date, listed, pick, table, version_number, \
    versions, when


def _catalog(args: argparse.Namespace):
    from models_ml.core.settings import load_settings
    from models_ml.definitions.catalog import load_catalog

    settings = load_settings(args.home)
    return settings, load_catalog(settings, refresh=getattr(args, "refresh", False))


def _external_states(settings, groups) -> dict:
    """External group name -> (problem or "", its dbt source freshness, its row statistics), read in place
    through one read-only store (mounted there, nothing copied); unreadable before the first landing."""
    from models_ml.features.stats import NOT_BUILT, group_stats
    from models_ml.offline.external import mount_readable, source_freshness
    from models_ml.offline.store import OfflineStoreError, open_offline_store

    external = [g for g in groups if g.external]
    if not external:
        return {}
    try:
        store = open_offline_store(settings, read_only=True)
    except OfflineStoreError as error:
        return {g.name: (str(error), None, NOT_BUILT) for g in external}
    now = dt.datetime.now(dt.timezone.utc)
    with store:
        problems = mount_readable(store, external)
        return {g.name: (problems[g.name], None, NOT_BUILT) if g.name in problems else
                ("", source_freshness(store, g, now), group_stats(store, g)) for g in external}


def _age(value: dt.timedelta) -> str:
    """An age in its largest unit: "3 hours", "4,710 days"."""
    seconds = value.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            amount = int(seconds // size)
            return f"{amount:,} {unit}{'s' if amount != 1 else ''}"
    return f"{int(seconds)} seconds"


def _freshness_label(state) -> str:
    """An external group's dbt source freshness: "pass (loaded 3 hours ago)", "error (...)", "unreadable"."""
    if state is None:
        return "-"
    problem, freshness, _ = state
    if problem:
        return "unreadable"
    if freshness.latest_loaded_at is None:
        return "unknown (no loaded_at_field)" if freshness.status == "unknown" else "unknown"
    return f"{freshness.status} (loaded {_age(freshness.age)} ago)"


def features_list(args: argparse.Namespace) -> int:
    from models_ml.features.stats import read_group_stats

    settings, catalog = _catalog(args)
    groups = sorted(catalog.groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))
    states = _external_states(settings, [g for _, g in groups])
    built = [g for _, g in groups if not g.external]
    stats_of = {g.name: stats for g, stats in zip(built, read_group_stats(settings, built))}
    rows = []
    for (name, version), group in groups:
        stats = states[name][2] if group.external else stats_of[name]
        rows.append([
            name, f"v{version}" if version is not None else "-", group.kind, ",".join(group.entity),
            group.event_time, duration(group.ttl), "yes" if group.online else "no", str(len(group.features)),
            f"{stats.row_count:,}" if stats.row_count is not None else
            ("unreadable" if group.external else "not built"),
            when(stats.latest_event_at), _freshness_label(states.get(name)),
        ])
    print(table(rows, ["group", "version", "kind", "entity", "event time", "ttl", "online", "features", "rows",
                        "latest event", "source freshness"]))
    for (name, _), group in groups:
        if group.external:
            problem = states[name][0]
            print(f"  {name} lives in {group.external.describe()} (dbt source {group.external.source})"
                  + (f"\n    unreadable: {problem}" if problem else ""))
    if catalog.views:
        print()
        print(table(
            [[v.name, _version_label(catalog, v), v.label.model, v.label.target,
              v.inference_spine.model if v.inference_spine else "- (label model)", str(len(v.feature_columns)),
              group_versions(v.group_versions())] for v in catalog.all_views()],
            ["feature view", "version", "label model", "target", "inference spine", "features", "groups"],
        ))
    if catalog.domains:
        print()
        print(table([[d.name, ", ".join(d.sources), d.loader] for d in sorted(catalog.domains.values(),
                                                                            key=lambda d: d.name)],
                    ["domain", "dbt sources", "loader"]))
    return 0


def _version_label(catalog, view) -> str:
    """"v2", or "v1 (current)" for the version training uses unless asked for another."""
    return f"v{view.version}" + (" (current)" if catalog.views[view.name].version == view.version else "")


def _used_by(settings) -> dict[tuple[str, int | None], list[str]]:
    """(group, version) -> the model versions in use that need it, with their roles ("flight_delay v2
    (challenger)"); empty when the home has no registry. The registry is imported here, when it is asked for."""
    if not settings.warehouse_path.exists():
        return {}
    from models_ml.training.registry import group_versions_in_use

    roles: dict[tuple[str, int | None], dict[str, list[str]]] = {}
    for use in group_versions_in_use(settings):
        model = roles.setdefault((use.feature_group, use.group_version), {})
        model.setdefault(f"{use.model_name} v{use.version}", []).append(use.role)
    return {key: [f"{model} ({', '.join(r)})" for model, r in models.items()] for key, models in roles.items()}


def _group_versions(settings, catalog, name: str) -> None:
    """Every version of group ``name``: its relation, its features, the latest mark, the models using it."""
    used = _used_by(settings)
    groups = sorted((g for (n, _), g in catalog.groups.items() if n == name), key=lambda g: g.version or 0)
    label = lambda g: "-" if g.version is None else f"v{g.version}" + (  # noqa: E731
        " (latest)" if g.version == g.latest_version else "")
    print(table([[label(g), g.qualified_relation, str(len(g.features)), listed(used.get((name, g.version), []))]
                 for g in groups],
                ["version", "relation", "features", "used by (model version, alias)"]))


def _show_group(settings, group) -> None:
    from models_ml.features.stats import read_group_stats

    if group.external:
        problem, freshness, stats = state = _external_states(settings, [group])[group.name]
        external = group.external
        print(f"{group.name} ({group.kind}, read in place, never copied)  {group.qualified_relation}")
        print(f"  {group.description}")
        print(f"  dbt source: {external.source}   lives in: {external.describe()}   declared location: "
              f"{external.location}")
        print(f"  columns against the declaration: {problem or 'ok'}")
        print(f"  source freshness: {_freshness_label(state)}   loaded_at_field: "
              f"{external.loaded_at_field or '-'}   warn after: {duration(external.warn_after, 'never')}   "
              f"error after: {duration(external.error_after, 'never')}")
    else:
        (stats,) = read_group_stats(settings, [group])
        print(f"{group.name} v{group.version} (latest v{group.latest_version})  {group.qualified_relation}")
        print(f"  {group.description}")
    print(f"  entity: {', '.join(group.entity)}   event time: {group.event_time}   "
          f"created time: {group.created_time or '-'}   ttl: {duration(group.ttl, 'none')}   online: {group.online}")
    print(f"  rows: {stats.row_count if stats.row_count is not None else 'not built'}   "
          f"latest event: {when(stats.latest_event_at)}   latest load: {when(stats.latest_loaded_at)}")
    print()
    print(table([[f.name, f.data_type, f.description] for f in group.features], ["feature", "type", "description"]))


def _view_versions(catalog, name: str) -> None:
    """Every version of view ``name`` with the group versions it reads; the current one marked."""
    print(table([[_version_label(catalog, v), str(len(v.feature_columns)), group_versions(v.group_versions())]
                 for v in catalog.all_views() if v.name == name],
                ["version", "features", "feature groups"]))


def _show_view(view) -> None:
    print(f"feature view {view.name} v{view.version}: {view.description}")
    print(f"  training spine: {view.label.qualified_relation} at {view.label.spine_time}, target {view.label.target}")
    scored = view.inference_spine.qualified_relation if view.inference_spine else "the label model"
    print(f"  inference spine: {scored}, windowed on {view.label.event_time}")
    rows = [[c, "request", view.label.model] for c in view.label.request_features]
    for ref in view.features:
        rows += [[ref.output_name(f), ref.group.feature(f).data_type, f"{ref.group.name} v{ref.group.version}"]
                 for f in ref.features]
    rows += [[f.name, "double", f"on demand: {f.function}({', '.join(f.inputs.values())})"] for f in view.on_demand]
    print(table(rows, ["feature", "type", "from"]))


def features_show(args: argparse.Namespace) -> int:
    settings, catalog = _catalog(args)
    if args.name in catalog.views:
        known = catalog.versions_of_view(args.name)
        if args.version is not None and args.version not in known:
            raise UsageError(f"--version: feature view {args.name!r} has no version {args.version} "
                             f"(versions: {versions(known)})")
        _show_view(catalog.view(args.name, args.version))
        print()
        print(f"versions of {args.name}:")
        _view_versions(catalog, args.name)
        return 0
    groups = sorted({name for name, _ in catalog.groups})
    if args.name not in groups:
        views = sorted(catalog.views)
        raise UsageError(f"name: no feature group {args.name!r} nor feature view of that name"
                         f"{did_you_mean(args.name, groups + views)} (groups: {listed(groups)}; "
                         f"views: {listed(views)})")
    numbers = sorted(v for name, v in catalog.groups if name == args.name and v is not None)
    if args.version is not None and args.version not in numbers:
        raise UsageError(f"--version: feature group {args.name!r} has no version {args.version} "
                         f"(versions: {versions(numbers)})")
    _show_group(settings, catalog.group(args.name, args.version))
    print()
    print(f"versions of {args.name}:")
    _group_versions(settings, catalog, args.name)
    return 0


def features_run(args: argparse.Namespace) -> int:
    from models_ml.core.home_lock import hold_home

    settings, catalog = _catalog(args)
    args.domain = pick("--domain", args.domain, sorted(catalog.domains), "domain")  # before the flow
    with hold_home(settings, args.prog):  # a busy home fails here, before Prefect starts; the flow nests
        from flows.feature_pipeline import feature_pipeline

        result = feature_pipeline(through=args.through, full_refresh=args.full_refresh, home=args.home,
                                  domain=args.domain)
    print(table([[t, f"{n:,}"] for t, n in sorted(result["rows_built"].items())], ["table", "rows"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `features` (list, show, run) to the `fti` command."""
    features = subparsers.add_parser("features", help="feature groups and views").add_subparsers(
        dest="features_command", required=True
    )
    listing = features.add_parser("list", help="every feature group and feature view")
    listing.add_argument("--refresh", action="store_true", help="re-parse the dbt project first")
    listing.set_defaults(handler=features_list)
    show = features.add_parser("show", help="one feature group (or view): features, types, freshness, and "
                                            "its versions (a group's: the models using each)")
    show.add_argument("name", help="a feature group or feature view (see `fti features list`)")
    show.add_argument("--version", type=version_number,
                      help="the group's version (default: its latest) or the view's (default: its current)")
    show.add_argument("--refresh", action="store_true", help="re-parse the dbt project first")
    show.set_defaults(handler=features_show)
    run = features.add_parser("run", help="run the feature pipeline flow (land + dbt build)")
    run.add_argument("--through", type=iso_date, help="land raw data through this ISO date (default: next day)")
    run.add_argument("--full-refresh", action="store_true")
    run.add_argument("--domain", help="whose raw data to land and build (a domain declared with its dbt sources, "
                                      "see `fti features list`; default: the only one)")
    run.set_defaults(handler=features_run)
