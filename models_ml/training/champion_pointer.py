"""The champion pointer: a small file per model that lets the inference service serve without the warehouse.

The registry lives in the warehouse, which the service must never open (a DuckDB file admits one writing
process, and the pipelines write it). So the registry, whenever it moves a champion, also writes
``FTI_HOME/models/<model>/champion.json`` (see :func:`models_ml.training.registry.promote`):

* the version and its model directory (relative to ``FTI_HOME``, so a copied or moved home still works;
  pointers written before that hold a path relative to the pointer or an absolute one, migrated on read);
* the model's feature view **pinned to the group versions it was trained on** (its lineage, as batch
  inference pins it), serialized whole, so the service knows which group versions, join keys, features,
  prefixes and TTLs to look up;
* the request schema: each field a request carries (label entity keys, the view's join keys, request
  features; optionally the spine time and the label's event time) with its type, taken from the label
  table in the warehouse at publication time.

The registry's committed aliases are the truth and the pointer is derived from them. A promotion first
*stages* the new pointer (``.champion.pending.json`` beside the live one), then commits the registry, then
*installs* the staged file with one rename; so a promotion killed half-way always leaves the staged file
behind, and whoever finds it (the next promotion, ``fti doctor``, the service at start) asks the registry
which side won (see :func:`models_ml.training.registry.reconcile_pointers`). Every file is written aside,
fsynced and renamed, so the service, which polls the pointer's modification time, reads either the old
pointer or the new one. Publishing is idempotent.

The **challenger pointer** (``challenger.json``, :func:`publish_challenger`) is the same file for the
``challenger`` alias; the service reads it only with canary or shadow serving on. It is republished by
whoever moves the challenger (promote or roll back either alias, the training flow, ``fti online publish``)
and removed when the model has no challenger apart from its champion. It is not staged: a challenger the
service missed for a moment costs a comparison some rows, never an answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import types
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models_ml.core.home_paths import from_stored, to_stored
from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.definitions.pinning import TrainedOn, pin_view
from models_ml.core.kinds import kind_of
from models_ml.offline.store import opened


class PublishedVersion(TrainedOn, Protocol):
    """What publishing needs of a model version: its lineage and where its files are."""

    model_dir: Path

POINTER_FILE = "champion.json"
PENDING_FILE = ".champion.pending.json"
TEMPORARY_SUFFIX = ".tmp"
RELATIVE_TO = "FTI_HOME"  # how a pointer says its paths are relative to the home
ALIAS = "champion"
CHALLENGER_FILE, CHALLENGER_ALIAS = "challenger.json", "challenger"
UTC = dt.timezone.utc


# --------------------------------------------------------------------------------------------------
# Feature views as JSON


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(hint: Any, value: Any) -> Any:
    """``value`` (from JSON) as the type ``hint``: dataclasses by their field types, tuples, dicts, timedeltas;
    generic so that fields added to the catalog's classes round-trip without changes here."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _build(hints[f.name], value[f.name])
                       for f in dataclasses.fields(hint) if f.init and f.name in value})
    if origin is tuple:
        inner = args[0] if args else Any
        return tuple(_build(inner, v) for v in value)
    if origin is dict:
        return dict(value)
    if hint is dt.timedelta:
        return dt.timedelta(seconds=value)
    return value


def view_to_dict(view: FeatureView) -> dict[str, Any]:
    return _plain(view)


def view_from_dict(data: dict[str, Any]) -> FeatureView:
    return _build(FeatureView, data)


# --------------------------------------------------------------------------------------------------
# The request schema


@dataclass(frozen=True)
class RequestField:
    """One field of a prediction request: its name, storage kind (int, float, bool, str, timestamp, ...)
    and whether a request must carry it."""

    name: str
    kind: str
    required: bool


def request_fields(view: FeatureView, label_kinds: dict[str, str]) -> list[RequestField]:
    """Required: the label's entity keys, the view's join keys, its request features and the request columns
    its on-demand features read. Optional: the spine time (the as-of time of the lookup, default the
    request's arrival) and the label's event time (when no on-demand feature needs it)."""
    label = view.label
    join_keys = [spine for ref in view.features for spine in ref.join_keys]
    required = list(dict.fromkeys([*label.entity, *join_keys, *view.request_columns]))
    optional = [c for c in dict.fromkeys([label.spine_time, label.event_time]) if c not in required]
    missing = [c for c in [*required, *optional] if c not in label_kinds]
    if missing:
        raise ValueError(f"label model {label.qualified_relation} lacks columns {missing} that view {view.name} needs")
    return [RequestField(c, label_kinds[c], True) for c in required] + \
        [RequestField(c, label_kinds[c], False) for c in optional]


def label_kinds(settings: Settings, view: FeatureView) -> dict[str, str]:
    """Storage kinds of the label table's columns, read from the warehouse (read-only)."""
    label = view.label
    with opened(settings, read_only=True) as store:
        schema = store.arrow_schema(label.schema, label.relation)
    return {f.name: kind_of(f.type) for f in schema}


# --------------------------------------------------------------------------------------------------
# The pointer


@dataclass(frozen=True)
class Pointer:
    """A published champion, as the service reads it. ``model_dir`` is resolved against the home the pointer
    is in; ``stored_model_dir`` is what the file says (absolute in pointers written before homes moved)."""

    model_name: str
    version: int
    model_dir: Path
    view: FeatureView
    fields: tuple[RequestField, ...]
    published_at: dt.datetime
    path: Path
    stored_model_dir: str = ""


def pointer_path(settings: Settings, model_name: str) -> Path:
    return settings.models_dir / model_name / POINTER_FILE


def challenger_path(settings: Settings, model_name: str) -> Path:
    """The challenger's pointer: the same content for the ``challenger`` alias, which the service serves
    beside the champion only with canary or shadow serving on."""
    return settings.models_dir / model_name / CHALLENGER_FILE


def pending_path(settings: Settings, model_name: str) -> Path:
    """The pointer a promotion will install once the registry has committed (see :func:`stage`)."""
    return settings.models_dir / model_name / PENDING_FILE


def published_models(settings: Settings) -> list[str]:
    """Every model with a published champion pointer."""
    if not settings.models_dir.exists():
        return []
    return sorted(p.parent.name for p in settings.models_dir.glob(f"*/{POINTER_FILE}"))


def interrupted_models(settings: Settings) -> list[str]:
    """Every model whose last promotion was interrupted between staging its pointer and installing it."""
    if not settings.models_dir.exists():
        return []
    return sorted(p.parent.name for p in settings.models_dir.glob(f"*/{PENDING_FILE}"))


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _durable_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` all at once and durably: a reader (or a crash) sees the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _sync_directory(path.parent)


def pointer_payload(settings: Settings, version: PublishedVersion, *, catalog: Catalog | None = None) -> dict[str, Any]:
    """The content of ``version``'s champion pointer (reads the label table's column types)."""
    catalog = catalog if catalog is not None else load_catalog(settings)
    view = pin_view(catalog, version)
    fields = request_fields(view, label_kinds(settings, view))
    return {
        "model_name": version.model_name,
        "alias": ALIAS,
        "version": version.version,
        "model_dir": to_stored(settings.home, Path(version.model_dir)),
        "paths_relative_to": RELATIVE_TO,
        "feature_view": view_to_dict(view),
        "request_fields": [dataclasses.asdict(f) for f in fields],
        "published_at": dt.datetime.now(UTC).isoformat(),
    }


def _publishes(current: Pointer, payload: dict[str, Any]) -> bool:
    """Whether ``current`` already says what ``payload`` says (publication time aside)."""
    return current.version == payload["version"] and current.stored_model_dir == payload["model_dir"] and \
        view_to_dict(current.view) == payload["feature_view"] and \
        [dataclasses.asdict(f) for f in current.fields] == payload["request_fields"]


def _current(path: Path) -> Pointer | None:
    try:
        return read_pointer_file(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_pointer(settings: Settings, payload: dict[str, Any], path: Path | None = None) -> Pointer:
    """Publish ``payload`` as its model's pointer (or at ``path``: another alias's pointer, e.g. the
    challenger's); an unchanged pointer keeps its file (and mtime)."""
    path = path if path is not None else pointer_path(settings, payload["model_name"])
    current = _current(path)
    if current is not None and _publishes(current, payload):
        return current
    _durable_write(path, json.dumps(payload, indent=2, sort_keys=True))
    return read_pointer_file(path)


def publish_champion(settings: Settings, version: PublishedVersion, *, catalog: Catalog | None = None) -> Pointer:
    """Write ``champion.json`` for ``version``, its model's champion (idempotent)."""
    return write_pointer(settings, pointer_payload(settings, version, catalog=catalog))


def publish_challenger(settings: Settings, model_name: str, version: PublishedVersion | None, *,
                       catalog: Catalog | None = None) -> Pointer | None:
    """Write ``challenger.json`` for ``version`` (idempotent), or remove it when there is no challenger to serve
    (``None``: the model has none, or its challenger is the champion's version)."""
    path = challenger_path(settings, model_name)
    if version is None:
        path.unlink(missing_ok=True)
        return None
    return write_pointer(settings, {**pointer_payload(settings, version, catalog=catalog), "alias": CHALLENGER_ALIAS},
                         path)


def stage(settings: Settings, payload: dict[str, Any]) -> None:
    """Write the pointer a promotion is about to commit, beside the live one; its presence marks the
    promotion as in progress until :func:`install_staged` or :func:`discard_staged`."""
    _durable_write(pending_path(settings, payload["model_name"]), json.dumps(payload, indent=2, sort_keys=True))


def staged_version(settings: Settings, model_name: str) -> int | None:
    """The version of the staged pointer, or None when there is none (or it cannot be read)."""
    try:
        return int(json.loads(pending_path(settings, model_name).read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def install_staged(settings: Settings, model_name: str) -> Pointer:
    """Make the staged pointer the live one in one rename (an unchanged live pointer is kept as it is)."""
    staged, path = pending_path(settings, model_name), pointer_path(settings, model_name)
    current = _current(path)
    if current is not None and _publishes(current, json.loads(staged.read_text())):
        discard_staged(settings, model_name)
        return current
    os.replace(staged, path)
    _sync_directory(path.parent)
    return read_pointer_file(path)


def discard_staged(settings: Settings, model_name: str) -> None:
    """Drop a staged pointer and any half-written temporary files of the model's pointers."""
    directory = settings.models_dir / model_name
    for leftover in directory.glob(f".*{TEMPORARY_SUFFIX}") if directory.exists() else ():
        leftover.unlink(missing_ok=True)
    pending_path(settings, model_name).unlink(missing_ok=True)


def remove_pointer(settings: Settings, model_name: str) -> None:
    """Withdraw a model's pointer (its registry has no champion any more)."""
    discard_staged(settings, model_name)
    pointer_path(settings, model_name).unlink(missing_ok=True)


def read_pointer_file(path: Path, home: Path | None = None) -> Pointer:
    """The pointer in ``path``, its model directory resolved against ``home`` (default: the home the pointer
    lies in, ``<home>/models/<model>/champion.json``)."""
    data = json.loads(Path(path).read_text())
    home = home if home is not None else Path(path).parents[2]
    stored = data["model_dir"]
    if data.get("paths_relative_to") == RELATIVE_TO or Path(stored).is_absolute():
        model_dir = from_stored(home, stored)
    else:  # written before paths were relative to the home: relative to the pointer's directory
        model_dir = Path(path).parent / stored
    return Pointer(
        model_name=data["model_name"], version=int(data["version"]), model_dir=model_dir,
        view=view_from_dict(data["feature_view"]),
        fields=tuple(RequestField(**f) for f in data["request_fields"]),
        published_at=dt.datetime.fromisoformat(data["published_at"]), path=Path(path), stored_model_dir=stored,
    )


def read_pointer(settings: Settings, model_name: str) -> Pointer:
    """The published champion of ``model_name`` (FileNotFoundError when none was published)."""
    return read_pointer_file(pointer_path(settings, model_name), settings.home)
