"""The request schema of a served model: a pydantic model built from the fields its champion pointer
publishes (types from the label table; unknown fields refused; strings non-empty; numbers finite; times
with a time zone). A bad field gets a 422 whose ``detail`` names it (``loc: ["body", "distance_miles"]``),
so nothing reaches the store or the model before validation passes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

import pydantic

from models_ml.training.champion_pointer import RequestField

MAX_BATCH = 1000

_StrictStr = Annotated[str, pydantic.StringConstraints(strict=True, min_length=1, max_length=512)]
_TYPES: dict[str, Any] = {
    "str": _StrictStr,
    "int": pydantic.StrictInt,
    "float": Annotated[float, pydantic.Field(allow_inf_nan=False)],
    "bool": pydantic.StrictBool,
    "timestamp": pydantic.AwareDatetime,
    "date": dt.date,
}


def request_model(model_name: str, fields: Sequence[RequestField]) -> type[pydantic.BaseModel]:
    """A pydantic model of one prediction request: required fields non-null, optional ones may be left out."""
    definitions: dict[str, Any] = {}
    for f in fields:
        kind = _TYPES.get(f.kind)
        if kind is None:
            raise ValueError(f"request field {f.name!r} has kind {f.kind!r}, which requests cannot carry")
        definitions[f.name] = (kind, ...) if f.required else (kind | None, None)
    return pydantic.create_model(
        f"{model_name}_request", __config__=pydantic.ConfigDict(extra="forbid", frozen=True), **definitions,
    )


def batch_model(request_type: type[pydantic.BaseModel]) -> pydantic.TypeAdapter:
    """A list of 1 to :data:`MAX_BATCH` requests."""
    return pydantic.TypeAdapter(Annotated[list[request_type], pydantic.Field(min_length=1, max_length=MAX_BATCH)])


def validation_errors(error: pydantic.ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 shape: each error with its location under ``body``."""
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors(include_url=False)]
