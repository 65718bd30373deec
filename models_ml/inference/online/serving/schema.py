"""The request schema of a served model, and how a request body becomes validated requests.

**Parsing** (:func:`parse_one`, :func:`parse_batch`): the body must be UTF-8 JSON (standard JSON: no
``NaN``/``Infinity``, no lone surrogates) with no key twice in an object (a duplicate is refused, naming
it, instead of the last one silently winning); a batch is a JSON list read item by item, so a list longer
than :data:`MAX_BATCH` is refused after :data:`MAX_BATCH` items were built, whatever its length. A key that
is not a request field is refused before validation, and at most :data:`MAX_ERRORS` errors are listed (with
the total count), so the answer to a hostile body stays small.

**Validation** (:func:`request_model`, a pydantic model built from the fields the model's champion pointer
publishes, with types from the label table): strings non-empty, at most 512 characters; integers strict and
within int64; floats JSON numbers only, finite float64 (an integer beyond it, 10^400, is refused);
timestamps ISO 8601 strings with an offset (a number is refused: it would be a Unix time of unknown unit),
in years 1900..2200 in UTC; dates ISO strings in the same years. So every value that passes can be converted to UTC, scored and logged. A request feature
whose view declares bounds (:class:`~models_ml.definitions.catalog.RequestBound`: ``min``/``max`` or
``values``, carried in the champion pointer's feature view) must also lie within them. A bad field gets a
422 whose ``detail`` names it (``loc: ["body", "distance_miles"]``; out of bounds, the message gives the
value and what is allowed), so nothing reaches the store or the model before validation passes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import pydantic
import pydantic_core
from pydantic_core import PydanticCustomError

from models_ml.definitions.catalog import RequestBound
from models_ml.training.champion_pointer import RequestField

MAX_BATCH = 1000
MAX_ERRORS = 20  # errors listed in one 422; the total is given as ``error_count``
MIN_YEAR, MAX_YEAR = 1900, 2200
_NAME_CHARS = 100  # a key echoed in an error is cut to this many characters
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UTC = dt.timezone.utc


# -- field types ---------------------------------------------------------------------------------------------

_ISO_HINT = "an ISO 8601 date and time with a UTC offset, e.g. 2024-01-31T12:00:00+00:00"


def _timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        if isinstance(value, dt.datetime):  # already a datetime (python input): check it as parsed below
            parsed = value
        else:
            raise PydanticCustomError("datetime_type", f"Input should be {_ISO_HINT} (a number is not accepted)")
    else:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("datetime_from_date_parsing", f"Input should be {_ISO_HINT}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "Input should have timezone info (a UTC offset)")
    # The local year first: within it, the conversion to UTC cannot overflow (year 1 at +01:00 would).
    if not MIN_YEAR <= parsed.year <= MAX_YEAR or not MIN_YEAR <= parsed.astimezone(UTC).year <= MAX_YEAR:
        raise PydanticCustomError("datetime_range", f"Input should be between the years {MIN_YEAR} and {MAX_YEAR} "
                                                    "in UTC")
    return parsed


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        parsed = value
    elif not isinstance(value, str):
        raise PydanticCustomError("date_type", "Input should be an ISO 8601 date, e.g. 2024-01-31 (a number is "
                                               "not accepted)")
    else:
        try:
            parsed = dt.date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date_parsing", "Input should be an ISO 8601 date, "
                                                      "e.g. 2024-01-31") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise PydanticCustomError("date_range", f"Input should be between the years {MIN_YEAR} and {MAX_YEAR}")
    return parsed


def _finite_float(value: Any) -> float:
    """A JSON number as a finite float64: an integer beyond float range (10^400) is refused, not a 500."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PydanticCustomError("finite_number", "Input should be a finite number within float64 range "
                                                   "(about ±1.8e308)")
    return number


_StrictStr = Annotated[str, pydantic.StringConstraints(strict=True, min_length=1, max_length=512)]
_TYPES: dict[str, Any] = {
    "str": _StrictStr,
    "int": Annotated[int, pydantic.Strict(), pydantic.Field(ge=INT64_MIN, le=INT64_MAX)],
    "float": Annotated[float, pydantic.PlainValidator(_finite_float)],
    "bool": pydantic.StrictBool,
    "timestamp": Annotated[dt.datetime, pydantic.PlainValidator(_timestamp)],
    "date": Annotated[dt.date, pydantic.PlainValidator(_date)],
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS] + "..."


def _within(bound: RequestBound) -> pydantic.AfterValidator:
    """Refuses a value outside ``bound``, naming the field, the value and what is allowed."""
    kind = "value_not_allowed" if bound.values is not None else "out_of_range"

    def check(value: Any) -> Any:
        if value is not None and not bound.allows(value):
            raise PydanticCustomError(kind, f"{bound.name} must be {bound.describe()}, got {_shown(value)}")
        return value

    return pydantic.AfterValidator(check)


_BOUNDABLE = {"int": (int, float), "float": (int, float), "str": (str,)}


def _bounded(kind: Any, field: RequestField, bound: RequestBound) -> Any:
    wanted = _BOUNDABLE.get(field.kind, ())
    limits = bound.values if bound.values is not None else [b for b in (bound.minimum, bound.maximum) if b is not None]
    if not limits or not all(isinstance(v, wanted) and not isinstance(v, bool) for v in limits):
        raise ValueError(f"request field {field.name!r} ({field.kind}) cannot be bounded to {bound.describe()}")
    return Annotated[kind, _within(bound)]


def request_model(model_name: str, fields: Sequence[RequestField],
                  bounds: Iterable[RequestBound] = ()) -> type[pydantic.BaseModel]:
    """A pydantic model of one prediction request: required fields non-null, optional ones may be left out,
    a field with a bound (its view's declaration) within it."""
    bound_of = {b.name: b for b in bounds}
    definitions: dict[str, Any] = {}
    for f in fields:
        kind = _TYPES.get(f.kind)
        if kind is None:
            raise ValueError(f"request field {f.name!r} has kind {f.kind!r}, which requests cannot carry")
        if f.name in bound_of:
            kind = _bounded(kind, f, bound_of[f.name])
        definitions[f.name] = (kind, ...) if f.required else (kind | None, None)
    return pydantic.create_model(
        f"{model_name}_request", __config__=pydantic.ConfigDict(extra="forbid", frozen=True), **definitions,
    )


def batch_model(request_type: type[pydantic.BaseModel]) -> pydantic.TypeAdapter:
    """A list of 1 to :data:`MAX_BATCH` requests."""
    return pydantic.TypeAdapter(Annotated[list[request_type], pydantic.Field(min_length=1, max_length=MAX_BATCH)])


# -- errors --------------------------------------------------------------------------------------------------


class RequestRejected(Exception):
    """A request that gets a 422: the first :data:`MAX_ERRORS` errors (FastAPI's shape) and their total."""

    def __init__(self, errors: list[dict[str, Any]], count: int | None = None) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid request")
        self.errors = errors[:MAX_ERRORS]
        self.count = len(errors) if count is None else count

    def body(self) -> dict[str, Any]:
        return {"detail": self.errors, "error_count": self.count}


def _name(key: str) -> str:
    return key if len(key) <= _NAME_CHARS else key[:_NAME_CHARS] + "..."


def _error(loc: Sequence[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def validation_errors(error: pydantic.ValidationError, prefix: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """FastAPI's 422 shape: each error with its location under ``body`` (the first :data:`MAX_ERRORS`)."""
    errors = error.errors(include_url=False, include_input=False, include_context=False)[:MAX_ERRORS]
    return [_error([*prefix, *e["loc"]], e["msg"], e["type"]) for e in errors]


# -- parsing -------------------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
_WHITESPACE = json.decoder.WHITESPACE


def _json_error(message: str, loc: Sequence[Any] = ()) -> RequestRejected:
    return RequestRejected([_error(loc, f"Invalid JSON: {message}", "json_invalid")])


def _duplicate(error: _DuplicateKey, loc: Sequence[Any] = ()) -> RequestRejected:
    return RequestRejected([_error([*loc, _name(error.key)], f"Duplicate key {_name(error.key)!r}: each field may "
                                                             "appear once", "duplicate_key")])


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _json_error("the body is not UTF-8") from None
    if "\\ud" in text or "\\uD" in text:  # a surrogate escape: refuse lone ones (pydantic's parser does)
        try:
            pydantic_core.from_json(body)
        except ValueError as error:
            raise _json_error(str(error)) from None
    return text


def _decode(text: str, start: int, loc: Sequence[Any] = ()) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, start)
    except _DuplicateKey as error:
        raise _duplicate(error, loc) from None
    except json.JSONDecodeError as error:
        raise _json_error(f"{error.msg} at character {error.pos}", loc) from None
    except (ValueError, RecursionError) as error:  # NaN/Infinity; an integer of > 4300 digits; deep nesting
        raise _json_error(str(error) if isinstance(error, ValueError) else "nested too deeply", loc) from None


def _end(text: str, index: int) -> None:
    index = _WHITESPACE.match(text, index).end()
    if index != len(text):
        raise _json_error(f"extra data at character {index}")


def parse_one(body: bytes) -> Any:
    """The JSON value of a body (see the module docstring), or :class:`RequestRejected`."""
    text = _text(body)
    value, index = _decode(text, 0 if text[:1] in "{[" else _WHITESPACE.match(text, 0).end())
    if index != len(text):
        _end(text, index)
    return value


def parse_batch(body: bytes) -> list[Any]:
    """The items of a JSON list, read one at a time: at most :data:`MAX_BATCH` are built."""
    text = _text(body)
    index = _WHITESPACE.match(text, 0).end()
    if text[index:index + 1] != "[":
        if index == len(text):
            raise _json_error("the body is empty")
        raise RequestRejected([_error([], "Input should be a valid list", "list_type")])
    index = _WHITESPACE.match(text, index + 1).end()
    items: list[Any] = []
    if text[index:index + 1] == "]":
        index += 1
    else:
        while True:
            if len(items) == MAX_BATCH:
                raise RequestRejected([_error([], f"List should have at most {MAX_BATCH} items, not more",
                                              "too_long")])
            item, index = _decode(text, index, [len(items)])
            items.append(item)
            index = _WHITESPACE.match(text, index).end()
            separator = text[index:index + 1]
            if separator == "]":
                index += 1
                break
            if separator != ",":
                raise _json_error(f"expected ',' or ']' at character {index}")
            index = _WHITESPACE.match(text, index + 1).end()
    _end(text, index)
    if not items:
        raise RequestRejected([_error([], "List should have at least 1 item after validation, not 0", "too_short")])
    return items


def unknown_keys(item: Any, fields: frozenset[str], prefix: Sequence[Any] = ()) -> Iterable[dict[str, Any]]:
    """An ``extra_forbidden`` error per key of ``item`` (a dict) that is not a request field."""
    for key in item:
        if key not in fields:
            yield _error([*prefix, _name(key)], "Extra inputs are not permitted", "extra_forbidden")


def validate(request_type: type[pydantic.BaseModel], fields: frozenset[str], items: list[Any],
             batch: bool) -> list[dict[str, Any]]:
    """The validated requests (plain dicts), or :class:`RequestRejected` with at most :data:`MAX_ERRORS`
    errors listed: unknown keys are counted without validating, the rest by pydantic item by item."""
    out: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    count = 0
    for i, item in enumerate(items):
        prefix = (i,) if batch else ()
        if type(item) is dict and not fields.issuperset(item):
            extra = [k for k in item if k not in fields]
            count += len(extra)
            if len(errors) < MAX_ERRORS:
                errors.extend(unknown_keys({k: None for k in extra[:MAX_ERRORS]}, fields, prefix))
            continue
        try:
            # The fields' values (the model has no nested models): what model_dump gives, 30x faster.
            out.append(request_type.model_validate(item).__dict__.copy())
        except pydantic.ValidationError as error:
            count += error.error_count()
            if len(errors) < MAX_ERRORS:
                errors.extend(validation_errors(error, prefix))
    if count:
        raise RequestRejected(errors, count)
    return out
