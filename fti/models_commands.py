"""`fti models ...` and `fti train`: inspect the model registry, move aliases, run the training flow.

Registered on the main parser by :func:`register`; each command sets ``handler`` (``args -> exit code``)
and imports the registry (and with it LightGBM) only when it runs. Names (models, versions, aliases,
views) and training settings are checked here, before anything starts, by :func:`model_version` and
:func:`train`'s checks: a wrong one is a :class:`~fti.text.UsageError` naming the argument.
"""

from __future__ import annotations

import argparse
import json

from fti.text import SPLITS, UsageError, aliases, counts, fractions, group_versions, iso_date, move, num, pick, \
    settings_pairs, table, version_number, versions, when

# models_ml.training.registry.CHAMPION and CHALLENGER, written out so that building the parser imports no model code
CHAMPION, CHALLENGER = "champion", "challenger"


def _settings(args: argparse.Namespace):
    from models_ml.core.settings import load_settings

    return load_settings(args.home)


def model_name(settings, name: str | None, flag: str = "--model") -> str:
    """``name`` if the registry has it; without a name, the only registered model."""
    from models_ml.training import registry

    return pick(flag, name, registry.list_models(settings), "model", "the registry",
                none_yet="train one with `fti train`")


def model_version(settings, name: str | None, ref: str | int | None = None, *, model_flag: str = "--model",
                  ref_flag: str = "--alias"):
    """The registered version ``ref`` (a number, ``v3``, an alias or ``latest``; default the latest) of model
    ``name``: an unknown model, version or alias is a UsageError listing the known ones."""
    from models_ml.training import registry

    name = model_name(settings, name, model_flag)
    all_versions = registry.list_versions(settings, name)
    if ref is None or ref == "latest":
        return all_versions[-1]
    text = str(ref)
    if text.lstrip("vV").isdigit():
        number = int(text.lstrip("vV"))
        for version in all_versions:
            if version.version == number:
                return version
        raise UsageError(f"{ref_flag}: model {name!r} has no version {number} "
                         f"(versions: {versions(v.version for v in all_versions)})")
    held = registry.get_aliases(settings, name)
    if text not in held:
        raise UsageError(f"{ref_flag}: model {name!r} has no {text!r} alias (aliases: {aliases(held)}); "
                         f"give a version number, latest, or one of its aliases")
    return registry.resolve(settings, name, text)


def models_list(args: argparse.Namespace) -> int:
    from models_ml.training import registry

    settings = _settings(args)
    if args.name is not None:
        model_name(settings, args.name, "name")
    all_versions = registry.list_versions(settings, args.name)
    if not all_versions:
        print("no models registered")
        return 0
    rows = []
    for v in all_versions:
        test = registry.get_metrics(settings, v.model_name, v.version).get("test", {})
        rows.append([
            v.model_name, f"v{v.version}", ",".join(v.aliases) or "-", when(v.created_at),
            num(test.get("roc_auc")), num(test.get("pr_auc")), num(test.get("log_loss")), num(test.get("ece")),
            "pass" if v.gate_passed else "fail", f"{v.feature_view} v{v.feature_view_version}", v.snapshot_id,
        ])
    print(table(rows, ["model", "version", "aliases", "created", "roc_auc", "pr_auc", "log_loss", "ece", "gate",
                        "feature view", "snapshot"]))
    return 0


def models_show(args: argparse.Namespace) -> int:
    from models_ml.training import registry

    settings = _settings(args)
    v = model_version(settings, args.name, args.version, model_flag="name", ref_flag="version")
    print(f"{v.model_name} v{v.version}   aliases: {', '.join(v.aliases) or '-'}   created {when(v.created_at)}")
    print(f"  files:         {v.model_dir}")
    print(f"  feature view:  {v.feature_view} v{v.feature_view_version}")
    print(f"  groups:        {group_versions(v.feature_group_versions)}")
    print(f"  snapshot:      {v.snapshot_id}   hash {(v.snapshot_hash or '-')[:16]}")
    split = v.split or {}
    if split:
        print(f"  window:        [{split.get('start', '?')}, {split.get('end', '?')})   validation from "
              f"{split.get('validation_start')}   test from {split.get('test_start')}   "
              f"rows {counts(split.get('rows'), SPLITS)}")
    print(f"  code version:  {v.code_version}")
    print(f"  trees:         {v.best_iteration}   training {num(v.training_seconds, 1)} s   features {len(v.features)}")
    gate = v.gate or {}
    print(f"  gate:          {'passed' if v.gate_passed else 'failed'}")
    for check in gate.get("checks", []):
        print(f"    {'ok  ' if check['passed'] else 'FAIL'} {check['name']}: {check['detail']}")
    print()
    metrics = registry.get_metrics(settings, v.model_name, v.version)
    datasets = [d for d in ("test", "champion_on_test", "validation") if d in metrics]
    names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "rows", "positive_rate"]
    rows = [[n, *(num(metrics[d].get(n)) if n not in ("rows",) or metrics[d].get(n) is None
                  else f"{int(metrics[d][n]):,}" for d in datasets)]
            for n in names if any(n in metrics[d] for d in datasets)]
    print(table(rows, ["metric", *datasets]))
    slices = registry.get_slice_metrics(settings, v.model_name, v.version)
    if slices:
        print()
        print("slices, worst ROC-AUC first:")
        print(table([[s["slice_column"], s["slice_value"], f"{int(s['rows']):,}", num(s["positive_rate"], 3),
                       num(s["roc_auc"]), num(s["pr_auc"]), num(s["ece"])] for s in slices[: args.slices]],
                     ["slice", "value", "rows", "pos rate", "roc_auc", "pr_auc", "ece"]))
    history = registry.alias_history(settings, v.model_name)
    print()
    if not history:
        print(f"alias history of {v.model_name}: none (no alias was ever set)")
        return 0
    print(f"alias history of {v.model_name}, oldest first:")
    print(table([[when(h["changed_at"]), h.get("changed_by") or "-", h["alias"], h["action"],
                   move(h["previous_version"], h["version"]), h["reason"] or ""] for h in history],
                 ["when", "who", "alias", "action", "from → to", "reason"]))
    return 0


def models_promote(args: argparse.Namespace) -> int:
    from models_ml.training import registry

    settings = _settings(args)
    version = model_version(settings, args.name, args.version, model_flag="name", ref_flag="version")
    if not version.gate_passed and not args.force:
        raise UsageError(f"version: {args.name} v{version.version} failed its gate; pass --force to promote it "
                         f"anyway")
    change = registry.promote(settings, args.name, version.version, args.alias,
                              reason="manual promotion" + (" (forced past a failed gate)" if not version.gate_passed else ""))
    if not getattr(change, "changed", True):
        print(f"{args.name}: {args.alias} is already v{change.version}; nothing changed")
        return 0
    print(f"{args.name}: {args.alias} v{change.previous_version or '-'} -> v{change.version}")
    _say_published(settings, args.name, args.alias)
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    from models_ml.training import registry

    settings = _settings(args)
    model_name(settings, args.name, "name")
    held = list(dict.fromkeys(h["version"] for h in registry.alias_history(settings, args.name, args.alias)
                              if h["version"]))
    if len(held) < 2:  # the registry would say so too, after reconciling the pointers (a dbt parse)
        raise UsageError(f"--alias: model {args.name!r} has no earlier {args.alias} to roll back to "
                         f"({args.alias} history: {versions(held)}); promote a version instead")
    change = registry.rollback(settings, args.name, args.alias, reason="manual rollback")
    print(f"{args.name}: {args.alias} rolled back v{change.previous_version} -> v{change.version}")
    _say_published(settings, args.name, args.alias)
    return 0


def _say_published(settings, model_name: str, alias: str) -> None:
    """The registry republished the pointer(s) the online service follows: say where."""
    from models_ml.training.champion_pointer import challenger_path, pointer_path

    if alias == CHAMPION:
        print(f"{model_name}: published the champion pointer for the online service "
              f"({pointer_path(settings, model_name)})")
    if alias == CHALLENGER and challenger_path(settings, model_name).exists():
        print(f"{model_name}: published the challenger pointer ({challenger_path(settings, model_name)}); "
              f"`fti serve --canary SHARE` or `--shadow` serves it beside the champion")


def models_compare(args: argparse.Namespace) -> int:
    from models_ml.decisions.compare import ComparisonError, compare
    from models_ml.decisions.report import write_report

    settings = _settings(args)
    model_name(settings, args.name, "name")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: {args.alpha} is not between 0 and 1 (0.05 is usual)")
    try:
        c = compare(settings, args.name, args.source, alpha=args.alpha)
    except ComparisonError as error:
        raise UsageError(f"name: {error}") from None
    r = c.result
    print(f"{c.model_name}: champion v{c.champion.version} against challenger v{c.challenger.version}, "
          f"{c.source} scores, {c.test}")
    print(table([[name, f"v{arm.version}", f"{arm.scored:,}", f"{arm.labelled:,}", num(arm.log_loss),
                  num(arm.roc_auc), num(arm.brier), num(arm.test_split.get("log_loss")),
                  num(arm.test_split.get("roc_auc"))]
                 for name, arm in (("champion", c.champion), ("challenger", c.challenger))],
                ["model", "version", "scored", "with outcome", "log loss", "ROC-AUC", "Brier", "test log loss",
                 "test ROC-AUC"]))
    relative = f" ({r.relative_difference:+.2%})" if r.relative_difference is not None else ""
    print(f"difference (challenger - champion log loss): {num(r.difference, 5)}{relative}, interval "
          f"[{num(c.interval.low, 5)}, {num(c.interval.high, 5)}] over {len(c.looks)} daily look(s)")
    print(f"verdict: {c.verdict.upper()} ({c.reason})")
    for warning in c.warnings:
        print(f"warning: {warning}")
    print(f"report: {write_report(settings, c)}")
    return 0


def _config_pairs(pairs: list[str] | None, flag: str, config_class, what: str) -> dict[str, str]:
    """``--set``/``--gate`` KEY=VALUE pairs, checked against ``config_class``'s fields and value types."""
    import dataclasses

    from models_ml.training.train import config_from_mapping

    return settings_pairs(pairs, flag, [f.name for f in dataclasses.fields(config_class)], what,
                          check=lambda values: config_from_mapping(config_class, values))


def train(args: argparse.Namespace) -> int:
    from models_ml.definitions.catalog import load_catalog
    from models_ml.training import pipeline as tp
    from models_ml.training.evaluate import GateConfig
    from models_ml.training.train import TrainConfig

    settings = _settings(args)
    catalog = load_catalog(settings)
    args.view = pick("--view", args.view, sorted(catalog.views), "feature view")
    known = catalog.versions_of_view(args.view)
    if args.view_version is not None and args.view_version not in known:
        raise UsageError(f"--view-version: feature view {args.view} has no version {args.view_version} "
                         f"(versions: {versions(known)})")
    overrides = _config_pairs(args.set, "--set", TrainConfig, "training parameter")
    gate_overrides = _config_pairs(args.gate, "--gate", GateConfig, "gate threshold")
    options = dict(view=args.view, start=args.start, end=args.end, validation_start=args.validation_start,
                   test_start=args.test_start, fractions=args.fractions, overrides=overrides,
                   gate_overrides=gate_overrides, view_version=args.view_version)
    chosen = catalog.view(args.view, args.view_version)
    split = chosen.training.as_dict().get("split", {})
    if not ((args.start or split.get("start")) and (args.end or split.get("end"))):
        raise UsageError(f"--start/--end: feature view {args.view} v{chosen.version} declares no training window "
                         f"(meta.fti.training.split); pass --start and --end")
    try:
        tp.plan_training(settings, **options)  # the flow plans again: here only to fail before it starts
    except ValueError as error:
        raise UsageError(f"the training window of {args.view}: {error}") from None

    from models_ml.core.home_lock import hold_home

    with hold_home(settings, args.prog):  # a busy home fails here, before Prefect starts; the flow nests
        from flows.training_pipeline import training

        result = training(**options, promote=not args.no_promote, home=args.home)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    m, champion = result["metrics"], result.get("champion_metrics")
    print(f"{result['model_name']} v{result['version']} -> {result['alias']} (gate {result['gate']})")
    if result.get("promotion_refused"):
        print(f"not promoted to champion: {result['promotion_refused']}")
    print(f"feature view {result['model_name']} v{result['feature_view_version']}: "
          f"{group_versions(result['feature_group_versions'])}")
    print(f"snapshot {result['snapshot_id']}{' (reused)' if result['snapshot_reused'] else ''}, "
          f"rows {counts(result['rows'], SPLITS)}, "
          f"{result['best_iteration']} trees")
    header = ["metric", "test"] + ([f"champion v{result['champion_version']}"] if champion else [])
    print(table([[n, num(m[n]), *([num(champion[n])] if champion else [])]
                  for n in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")], header))
    worst = result.get("worst_slice")
    if worst:
        print(f"worst slice: {worst['column']}={worst['value']} roc_auc {num(worst['roc_auc'])} "
              f"({worst['rows']:,} rows)")
    print(f"seconds: {counts(result['seconds'])}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models` (list, show, promote, rollback, compare) and `train` to the `fti` command."""
    models = subparsers.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser("list", help="every registered version with its aliases and test metrics")
    listing.add_argument("name", nargs="?", help="only this model")
    listing.set_defaults(handler=models_list)

    show = models.add_parser("show", help="one version: lineage, metrics, slices, gate, alias history")
    show.add_argument("name")
    show.add_argument("version", nargs="?", help="number, alias (champion, challenger) or latest (default)")
    show.add_argument("--slices", type=int, default=10, help="how many slices to list (worst first)")
    show.set_defaults(handler=models_show)

    promote = models.add_parser("promote", help="point an alias (default champion) at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=version_number, help="version number (3 or v3)")
    promote.add_argument("--alias", default=CHAMPION)
    promote.add_argument("--force", action="store_true", help="promote even if the version failed its gate")
    promote.set_defaults(handler=models_promote)

    rollback = models.add_parser("rollback", help="move the champion back to the previous champion")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default=CHAMPION)
    rollback.set_defaults(handler=models_rollback)

    compare_parser = models.add_parser(
        "compare", help="champion against challenger on the outcomes so far: promote, keep or not yet decided")
    compare_parser.add_argument("name")
    compare_parser.add_argument("--source", choices=("shadow", "canary", "batch"),
                                help="whose challenger scores: the service's shadow or canary rows, or batch "
                                     "predictions under the challenger alias (default: the first that has rows)")
    compare_parser.add_argument("--alpha", type=float, default=0.05, help="the tests' error rate (default 0.05)")
    compare_parser.set_defaults(handler=models_compare)

    train_parser = subparsers.add_parser("train", help="run the training flow for a feature view")
    train_parser.add_argument("--view", help="the feature view whose model to train (default: the only one)")
    train_parser.add_argument("--view-version", type=version_number, metavar="N",
                              help="train on this version of the view (default: its current version; "
                                   "see `fti features show VIEW`)")
    train_parser.add_argument("--start", type=iso_date,
                              help="first spine time (ISO date, UTC; default from the model config)")
    train_parser.add_argument("--end", type=iso_date, help="end of the window, exclusive")
    train_parser.add_argument("--validation-start", type=iso_date, help="validation split starts here")
    train_parser.add_argument("--test-start", type=iso_date, help="test split starts here")
    train_parser.add_argument("--fractions", type=fractions,
                              help="train,validation,test row fractions instead of cut dates")
    train_parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyperparameter override")
    train_parser.add_argument("--gate", action="append", metavar="KEY=VALUE", help="gate threshold override")
    train_parser.add_argument("--no-promote", action="store_true", help="register as challenger even if it passes")
    train_parser.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    train_parser.set_defaults(handler=train)
