"""`fti models ...` and `fti train`: inspect the model registry, move aliases, run the training flow.

Registered on the main parser by :func:`register`; each command sets ``handler`` (``args -> exit code``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable

from fti.text import num, table, when
from models_ml.core.settings import load_settings
from models_ml.training import registry


def _friendly(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Registry errors (unknown model or version, nothing to roll back) become a message and exit code 2."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except registry.RegistryError as error:
            print(f"fti: {error}", file=sys.stderr)
            return 2

    return wrapped


def _settings(args: argparse.Namespace):
    return load_settings(args.home)


def models_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    versions = registry.list_versions(settings, args.name)
    if not versions:
        print("no models registered" + (f" under {args.name!r}" if args.name else ""))
        return 0
    rows = []
    for v in versions:
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
    settings = _settings(args)
    v = registry.resolve(settings, args.name, args.version) if args.version else registry.get_version(settings, args.name)
    print(f"{v.model_name} v{v.version}   aliases: {', '.join(v.aliases) or '-'}   created {when(v.created_at)}")
    print(f"  files:         {v.model_dir}")
    print(f"  feature view:  {v.feature_view} v{v.feature_view_version}   groups: "
          + ", ".join(f"{g} v{ver}" for g, ver in v.feature_group_versions.items()))
    print(f"  snapshot:      {v.snapshot_id}   hash {(v.snapshot_hash or '-')[:16]}")
    split = v.split or {}
    if split:
        print(f"  window:        [{split.get('start', '?')}, {split.get('end', '?')})   validation from "
              f"{split.get('validation_start')}   test from {split.get('test_start')}   rows {split.get('rows')}")
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
    if history:
        print()
        print("alias history:")
        print(table([[when(h["changed_at"]), h["alias"], h["action"],
                       f"v{h['previous_version']}" if h["previous_version"] else "-",
                       f"v{h['version']}" if h["version"] else "-", h["reason"] or ""] for h in history],
                     ["when", "alias", "action", "from", "to", "reason"]))
    return 0


def models_promote(args: argparse.Namespace) -> int:
    settings = _settings(args)
    version = registry.get_version(settings, args.name, args.version)
    if not version.gate_passed and not args.force:
        print(f"fti: {args.name} v{args.version} failed its gate; pass --force to promote it anyway", file=sys.stderr)
        return 1
    change = registry.promote(settings, args.name, args.version, args.alias,
                              reason="manual promotion" + (" (forced past a failed gate)" if not version.gate_passed else ""))
    print(f"{args.name}: {args.alias} v{change.previous_version or '-'} -> v{change.version}")
    _say_published(settings, args.name, args.alias)
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    change = registry.rollback(settings, args.name, args.alias, reason="manual rollback")
    print(f"{args.name}: {args.alias} rolled back v{change.previous_version} -> v{change.version}")
    _say_published(settings, args.name, args.alias)
    return 0


def _say_published(settings, model_name: str, alias: str) -> None:
    """The registry republished the champion pointer the online service follows: say where."""
    if alias == registry.CHAMPION:
        from models_ml.training.champion_pointer import pointer_path

        print(f"{model_name}: published the champion pointer for the online service "
              f"({pointer_path(settings, model_name)})")


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"fti train: --set expects KEY=VALUE, got {pair!r}")
        found[key.strip()] = value.strip()
    return found


def train(args: argparse.Namespace) -> int:
    from flows.training_pipeline import training
    from models_ml.definitions.catalog import load_catalog

    args.view = load_catalog(_settings(args)).view(args.view).name  # a wrong name fails before the flow starts
    fractions = [float(x) for x in args.fractions.split(",")] if args.fractions else None
    result = training(
        view=args.view, start=args.start, end=args.end, validation_start=args.validation_start,
        test_start=args.test_start, fractions=fractions, overrides=_overrides(args.set),
        gate_overrides=_overrides(args.gate), promote=not args.no_promote, home=args.home,
    )
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    m, champion = result["metrics"], result.get("champion_metrics")
    print(f"{result['model_name']} v{result['version']} -> {result['alias']} (gate {result['gate']})")
    print(f"snapshot {result['snapshot_id']}{' (reused)' if result['snapshot_reused'] else ''}, rows {result['rows']}, "
          f"{result['best_iteration']} trees")
    header = ["metric", "test"] + ([f"champion v{result['champion_version']}"] if champion else [])
    print(table([[n, num(m[n]), *([num(champion[n])] if champion else [])]
                  for n in ("roc_auc", "pr_auc", "log_loss", "brier", "ece")], header))
    worst = result.get("worst_slice")
    if worst:
        print(f"worst slice: {worst['column']}={worst['value']} roc_auc {num(worst['roc_auc'])} "
              f"({worst['rows']:,} rows)")
    print(f"seconds: {result['seconds']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `models` (list, show, promote, rollback) and `train` to the `fti` command."""
    models = subparsers.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser("list", help="every registered version with its aliases and test metrics")
    listing.add_argument("name", nargs="?", help="only this model")
    listing.set_defaults(handler=_friendly(models_list))

    show = models.add_parser("show", help="one version: lineage, metrics, slices, gate, alias history")
    show.add_argument("name")
    show.add_argument("version", nargs="?", help="number, alias (champion, challenger) or latest (default)")
    show.add_argument("--slices", type=int, default=10, help="how many slices to list (worst first)")
    show.set_defaults(handler=_friendly(models_show))

    promote = models.add_parser("promote", help="point an alias (default champion) at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=lambda s: int(s.lstrip("v")))
    promote.add_argument("--alias", default=registry.CHAMPION)
    promote.add_argument("--force", action="store_true", help="promote even if the version failed its gate")
    promote.set_defaults(handler=_friendly(models_promote))

    rollback = models.add_parser("rollback", help="move the champion back to the previous champion")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default=registry.CHAMPION)
    rollback.set_defaults(handler=_friendly(models_rollback))

    train_parser = subparsers.add_parser("train", help="run the training flow for a feature view")
    train_parser.add_argument("--view", help="the feature view whose model to train (default: the only one)")
    train_parser.add_argument("--start", help="first spine time (ISO date, UTC; default from the model config)")
    train_parser.add_argument("--end", help="end of the window, exclusive")
    train_parser.add_argument("--validation-start", help="validation split starts here")
    train_parser.add_argument("--test-start", help="test split starts here")
    train_parser.add_argument("--fractions", help="train,validation,test row fractions instead of cut dates")
    train_parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="hyperparameter override")
    train_parser.add_argument("--gate", action="append", metavar="KEY=VALUE", help="gate threshold override")
    train_parser.add_argument("--no-promote", action="store_true", help="register as challenger even if it passes")
    train_parser.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    train_parser.set_defaults(handler=train)
