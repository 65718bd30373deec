"""`fti doctor [--repair]`: find (and fix) champion pointers that disagree with the model registry.

The registry's committed champions are the truth; each model's ``champion.json`` (what the online service
serves) is derived from them. A promotion killed half-way, a pointer deleted or edited by hand, or a home
restored from mismatched backups leaves the two disagreeing: this command lists every such pointer on one
line each and exits 1, or with ``--repair`` rewrites them from the registry and says what it did.
"""

from __future__ import annotations

import argparse
import sys


def doctor(args: argparse.Namespace) -> int:
    from models_ml.core.settings import load_settings
    from models_ml.offline.store import transient_errors
    from models_ml.training.registry import RegistryError, reconcile_pointers

    settings = load_settings(args.home)
    try:
        mismatches = reconcile_pointers(settings, repair=args.repair)
    except RegistryError as error:
        print(f"fti doctor: {error}", file=sys.stderr)
        return 2
    except transient_errors() as error:
        print(f"fti doctor: cannot read the registry in {settings.warehouse_path} ({type(error).__name__}: "
              f"{error}); retry when the writer holding it has finished", file=sys.stderr)
        return 2
    if not mismatches:
        print("ok: every champion pointer agrees with the registry")
        return 0
    for mismatch in mismatches:
        print(mismatch.line())
    if not args.repair:
        print(f"fti doctor: {len(mismatches)} champion pointer(s) disagree with the registry; "
              f"run `fti doctor --repair` to rewrite them from it", file=sys.stderr)
        return 1
    failed = [m for m in mismatches if m.error]
    if failed:
        print(f"fti doctor: {len(failed)} of {len(mismatches)} could not be repaired (see above)", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `doctor` to the `fti` command."""
    parser = subparsers.add_parser("doctor", help="check the champion pointers against the registry")
    parser.add_argument("--repair", action="store_true",
                        help="rewrite every pointer that disagrees from the registry's committed champions")
    parser.set_defaults(handler=doctor)
