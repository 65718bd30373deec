"""Stream entries <-> typed rows. One entry per event, every field text (Redis stream fields are strings);
times are ISO 8601 with an offset. The validation rules are the base models' (base_fraud__*.sql), so an event
the batch path would quarantine is dead-lettered here with the same rule name, and still landed (the batch
path then quarantines it too); an entry that cannot become a raw row at all is dead-lettered only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
KINDS = ("transaction", "chargeback")
RAW_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "transaction": {"transaction_id": pa.string(), "card_id": pa.string(), "merchant_id": pa.string(),
                    "merchant_category": pa.string(), "amount": pa.float64(), "latitude": pa.float64(),
                    "longitude": pa.float64(), "transaction_at": TIMESTAMP},
    "chargeback": {"transaction_id": pa.string(), "is_fraud": pa.bool_(), "reported_at": TIMESTAMP},
}
EVENT_TIME = {"transaction": "transaction_at", "chargeback": "reported_at"}
ENTRY_ID = "_entry_id"


class Malformed(ValueError):
    """An entry that is not an event of a known kind."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo is not None else None  # naive: unreadable


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _bool(text: str | None) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get((text or "").lower())


_PARSE = {pa.string(): lambda t: t, pa.float64(): _number, TIMESTAMP: _time, pa.bool_(): _bool}


def encode(kind: str, row: Mapping[str, Any]) -> dict[str, str]:
    """A raw row as stream fields (None fields left out)."""
    fields = {"kind": kind}
    for name in RAW_COLUMNS[kind]:
        value = row.get(name)
        if value is None:
            continue
        fields[name] = value.isoformat() if isinstance(value, dt.datetime) else str(value).lower() \
            if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)
    return fields


def decode(fields: Mapping[Any, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, typed raw row) of one entry; Malformed when the kind is unknown."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    kind = text.get("kind")
    if kind not in KINDS:
        raise Malformed(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind, {name: _PARSE[t](text.get(name)) for name, t in RAW_COLUMNS[kind].items()}


def rule_broken(kind: str, row: Mapping[str, Any]) -> str | None:
    """The first validation rule the row breaks (the base models' rules, duplicates aside), or None."""
    if kind == "chargeback":
        if row["transaction_id"] is None:
            return "null_key"
        if row["reported_at"] is None or row["is_fraud"] is None:
            return "unreadable_time"
        return None
    if row["transaction_id"] is None or row["card_id"] is None or row["merchant_id"] is None:
        return "null_key"
    if row["transaction_at"] is None:
        return "unreadable_time"
    amount = row["amount"]
    if amount is None or amount <= 0 or amount > 1_000_000 or round(amount, 2) != amount:
        return "impossible_amount"
    lat, lon = row["latitude"], row["longitude"]
    if lat is None or lon is None or not -90 <= lat <= 90 or not -180 <= lon <= 180:
        return "impossible_coordinates"
    return None


@dataclass
class Decoded:
    """A micro-batch decoded: the raw rows of each kind (valid or not, to land), the valid ones, and the
    dead letters (entry id, reason, fields)."""

    raw: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    valid: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    dead: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def table(self, kind: str, which: str = "raw") -> pa.Table:
        rows = getattr(self, which)[kind]
        schema = pa.schema(list(RAW_COLUMNS[kind].items()))
        return pa.Table.from_pylist(rows, schema=schema)


def decode_batch(entries: Sequence[tuple[str, Mapping[Any, Any]]]) -> Decoded:
    out = Decoded()
    for entry_id, fields in entries:
        try:
            kind, row = decode(fields)
        except Malformed as error:
            fields = {_text(k) or "": _text(v) or "" for k, v in fields.items()}
            out.dead.append((entry_id, "malformed", {**fields, "detail": str(error)}))
            continue
        row[ENTRY_ID] = entry_id  # not a column (tables keep the raw columns only): names a late entry
        out.raw[kind].append(row)
        reason = rule_broken(kind, row)
        if reason is None:
            out.valid[kind].append(row)
        else:
            out.dead.append((entry_id, reason, {_text(k) or "": _text(v) or "" for k, v in fields.items()}))
    return out
