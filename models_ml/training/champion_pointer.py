"""The champion pointer: a small file per model that lets the inference service serve without the warehouse.

The registry lives in the warehouse, which the service must never open (a DuckDB file admits one writing
process, and the pipelines write it). So the registry, whenever it moves a champion, also writes
``FTI_HOME/models/<model>/champion.json`` (see :func:`models_ml.training.registry.promote`):

* the version and its model directory (relative to the pointer when inside ``FTI_HOME/models``, so a copied
  home still works);
* the model's feature view **pinned to the group versions it was trained on** (its lineage, as batch
  inference pins it), serialized whole, so the service knows which group versions, join keys, features,
  prefixes and TTLs to look up;
* the request schema: each field a request carries (label entity keys, the view's join keys, request
  features; optionally the spine time and the label's event time) with its type, taken from the label
  table in the warehouse at publication time.

The file is replaced atomically (written aside, then renamed), so the service, which polls its
modification time, reads either the old pointer or the new one. Publishing is idempotent.
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

from models_ml.core.settings import Settings
from models_ml.definitions.catalog import Catalog, FeatureView, load_catalog
from models_ml.definitions.pinning import TrainedOn, pin_view
from models_ml.core.kinds import kind_of
from models_ml.offline.store import opened


class PublishedVersion(TrainedOn, Protocol):
    """What publishing needs of a model version: its lineage and where its files are."""

    model_dir: Path

POINTER_FILE = "champion.json"
ALIAS = "champion"
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
    """A published champion, as the service reads it."""

    model_name: str
    version: int
    model_dir: Path
    view: FeatureView
    fields: tuple[RequestField, ...]
    published_at: dt.datetime
    path: Path


def pointer_path(settings: Settings, model_name: str) -> Path:
    return settings.models_dir / model_name / POINTER_FILE


def published_models(settings: Settings) -> list[str]:
    """Every model with a published champion pointer."""
    if not settings.models_dir.exists():
        return []
    return sorted(p.parent.name for p in settings.models_dir.glob(f"*/{POINTER_FILE}"))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def publish_champion(settings: Settings, version: PublishedVersion, *, catalog: Catalog | None = None) -> Pointer:
    """Write ``champion.json`` for ``version``, its model's champion (reads the label table's column types)."""
    model_name = version.model_name
    catalog = catalog if catalog is not None else load_catalog(settings)
    view = pin_view(catalog, version)
    fields = request_fields(view, label_kinds(settings, view))
    path = pointer_path(settings, model_name)
    model_dir = Path(version.model_dir)
    try:
        stored_dir = str(model_dir.resolve().relative_to(path.parent.resolve()))
    except ValueError:
        stored_dir = str(model_dir)
    payload = {
        "model_name": model_name,
        "alias": ALIAS,
        "version": version.version,
        "model_dir": stored_dir,
        "feature_view": view_to_dict(view),
        "request_fields": [dataclasses.asdict(f) for f in fields],
        "published_at": dt.datetime.now(UTC).isoformat(),
    }
    current = read_pointer_file(path) if path.exists() else None
    if current is not None and current.version == version.version and \
            view_to_dict(current.view) == payload["feature_view"] and \
            [dataclasses.asdict(f) for f in current.fields] == payload["request_fields"]:
        return current  # unchanged: keep the file (and its mtime) as it is
    _atomic_write(path, json.dumps(payload, indent=2, sort_keys=True))
    return read_pointer_file(path)




def read_pointer_file(path: Path) -> Pointer:
    data = json.loads(path.read_text())
    model_dir = Path(data["model_dir"])
    if not model_dir.is_absolute():
        model_dir = path.parent / model_dir
    return Pointer(
        model_name=data["model_name"], version=int(data["version"]), model_dir=model_dir,
        view=view_from_dict(data["feature_view"]),
        fields=tuple(RequestField(**f) for f in data["request_fields"]),
        published_at=dt.datetime.fromisoformat(data["published_at"]), path=path,
    )


def read_pointer(settings: Settings, model_name: str) -> Pointer:
    """The published champion of ``model_name`` (FileNotFoundError when none was published)."""
    return read_pointer_file(pointer_path(settings, model_name))
