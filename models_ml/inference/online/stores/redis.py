"""The Redis online store: one hash per entity, for deployments where several service processes (or
machines) share the features.

Keys (``prefix`` defaults to ``fti``):

* ``fti:fg:<group>:v<version>:<entity key>``: a hash with ``__event_us``, ``__created_us`` (epoch
  microseconds) and one field per non-NULL feature (text: ints and floats as ``repr``, booleans ``0``/``1``,
  timestamps as epoch microseconds, dates ISO); read back with ``HMGET`` and decoded by the group's schema;
* ``fti:groups``: group id -> schema (JSON); ``fti:freshness``: group id -> freshness (JSON);
  ``fti:entities``: group id -> number of entity hashes; ``fti:rows_written``: group id -> entities written
  by the last refresh.

**Refresh**: every entity is upserted by one Lua script that compares ``(event, created)`` with the stored
hash and rewrites the hash only when the candidate is newer, or has the same times and different values (so
a late-arriving older event never wins and a repeated refresh writes nothing). All the script calls of a
refresh and the freshness records go in one ``MULTI``/``EXEC``: Redis runs it without interleaving any
reader, so a reader sees all of a refresh or none of it. But Redis serves nobody else while a transaction
runs (its cost grows with the entities and features written; ``bench/online.py stores`` measures it), so a
refresh larger than ``max_transaction_rows`` entities (default 2,000: a stall of tens of milliseconds at
most) is applied in several transactions of that size: each entity is still never torn nor set back, and
the schema and freshness records move only with the last one, but while such a refresh runs a reader may
see some entities refreshed and others not yet (the bench counts such reads). Incremental refreshes after a feature-pipeline
run are usually below the bound; an initial load of millions is not, and should run before serving.
Raise the bound to trade longer stalls for wider atomicity.

**Read**: one pipeline (``MULTI``/``EXEC``, so one consistent snapshot) of ``HMGET`` per entity and group:
one network round trip per lookup.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import redis

from models_ml.core.settings import Settings
from models_ml.inference.online.store import (
    NULL_CREATED_US,
    Freshness,
    GroupRefresh,
    GroupSchema,
    OnlineStore,
    OnlineStoreError,
    RowsRequest,
    StoredRow,
    decode,
    from_us,
    latest_us,
    to_us,
)

NULL = "\x00"  # a NULL feature: the field is left out of the hash

# KEYS[1] = entity-count hash, KEYS[2] = rows-written hash, KEYS[3..] = entity hashes.
# ARGV[1] = group id, ARGV[2] = F (number of features), ARGV[3..F+2] = feature names,
# then per entity: event_us, created_us, F values (NULL marker for NULL).
_UPSERT = """
local group_id = ARGV[1]
local nf = tonumber(ARGV[2])
local names = {}
for j = 1, nf do names[j] = ARGV[2 + j] end
local pos = nf + 3
local written, added = 0, 0
for i = 3, #KEYS do
  local key = KEYS[i]
  local e, c = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  local current = redis.call('HMGET', key, '__event_us', '__created_us')
  local replace = true
  if current[1] then
    local ce, cc = tonumber(current[1]), tonumber(current[2])
    if e < ce or (e == ce and c < cc) then
      replace = false
    elseif e == ce and c == cc and nf > 0 then
      -- same times: rewrite only if a value differs (a repeated refresh writes nothing)
      local old = redis.call('HMGET', key, unpack(names))
      replace = false
      for j = 1, nf do
        local v = ARGV[pos + 1 + j]
        if v == '\0' then
          if old[j] then replace = true end
        elseif old[j] ~= v then
          replace = true
        end
      end
    elseif e == ce and c == cc then
      replace = false
    end
  else
    added = added + 1
  end
  if replace then
    redis.call('DEL', key)
    local fields = {'__event_us', ARGV[pos], '__created_us', ARGV[pos + 1]}
    for j = 1, nf do
      local v = ARGV[pos + 1 + j]
      if v ~= '\\0' then
        fields[#fields + 1] = ARGV[2 + j]
        fields[#fields + 1] = v
      end
    end
    redis.call('HSET', key, unpack(fields))
    written = written + 1
  end
  pos = pos + 2 + nf
end
if added > 0 then redis.call('HINCRBY', KEYS[1], group_id, added) end
if written > 0 then redis.call('HINCRBY', KEYS[2], group_id, written) end
return written
"""


def _text(kind: str, value: Any) -> str:
    if value is None:
        return NULL
    if kind == "float":
        return repr(float(value))
    if kind == "bool":
        return "1" if value else "0"
    return str(value)


class RedisStore(OnlineStore):
    """See the module docstring."""

    name: ClassVar[str] = "redis"
    transient: ClassVar[tuple[type[BaseException], ...]] = (redis.ConnectionError, redis.TimeoutError)

    @classmethod
    def from_settings(cls, settings: Settings, options: Mapping[str, Any], *, create: bool = True) -> RedisStore:
        """``options``: ``url`` (``FTI_REDIS_URL``), ``prefix`` (``FTI_REDIS_PREFIX``) and any keyword of the
        class. A server creates nothing, so ``create`` changes nothing."""
        return cls(**options)

    def __init__(self, url: str, *, prefix: str = "fti", max_transaction_rows: int = 2_000,
                 script_batch: int = 500, socket_timeout: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.max_transaction_rows = max_transaction_rows
        self.script_batch = script_batch
        self.client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._schemas: dict[str, GroupSchema] = {}

    # -- keys --------------------------------------------------------------------------------------------

    def _entity(self, group: str, key: str) -> str:
        return f"{self.prefix}:fg:{group}:{key}"

    @property
    def _groups_key(self) -> str:
        return f"{self.prefix}:groups"

    @property
    def _freshness_key(self) -> str:
        return f"{self.prefix}:freshness"

    @property
    def _entities_key(self) -> str:
        return f"{self.prefix}:entities"

    @property
    def _written_key(self) -> str:
        return f"{self.prefix}:rows_written"

    def close(self) -> None:
        self.client.close()

    def is_ready(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    # -- metadata ----------------------------------------------------------------------------------------

    def schemas(self) -> dict[str, GroupSchema]:
        if not self._schemas:
            self._load_schemas()
        return dict(self._schemas)

    def _load_schemas(self) -> None:
        raw = self.client.hgetall(self._groups_key)
        self._schemas = {k.decode(): GroupSchema.from_json(v) for k, v in raw.items()}

    def freshness(self) -> dict[str, Freshness]:
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self._groups_key).hgetall(self._freshness_key).hgetall(self._entities_key)
        pipe.hgetall(self._written_key)
        groups, records, counts, written = pipe.execute()
        self._schemas = {k.decode(): GroupSchema.from_json(v) for k, v in groups.items()}
        out = {}
        for key, value in records.items():
            group, data = key.decode(), json.loads(value)
            out[group] = Freshness(
                group=group, latest_event_at=from_us(data["latest_event_us"]), watermark=from_us(data["watermark_us"]),
                materialized_at=from_us(data["materialized_at_us"]), entities=int(counts.get(key, 0)),
                rows_written=int(written.get(key, 0)),
            )
        return out

    # -- writing -----------------------------------------------------------------------------------------

    def _drop_group(self, group: str) -> None:
        """Delete every entity hash of a group version (its columns changed: it is rebuilt whole)."""
        batch = []
        for key in self.client.scan_iter(match=f"{self.prefix}:fg:{group}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.unlink(*batch)
                batch = []
        if batch:
            self.client.unlink(*batch)
        self.client.hdel(self._entities_key, group)

    def apply(self, refreshes: Sequence[GroupRefresh], materialized_at: dt.datetime) -> dict[str, int]:
        """Merge every refresh in one MULTI/EXEC (split beyond ``max_transaction_rows``; module docstring)."""
        materialized_us = to_us(materialized_at)
        sha = self.client.script_load(_UPSERT)
        stored_schemas = {k.decode(): GroupSchema.from_json(v)
                          for k, v in self.client.hgetall(self._groups_key).items()}
        stored = {k.decode(): json.loads(v) for k, v in self.client.hgetall(self._freshness_key).items()}
        for refresh in refreshes:
            group = refresh.schema.id
            if group in stored_schemas and stored_schemas[group] != refresh.schema:
                self._drop_group(group)
                stored.pop(group, None)

        pipe = self.client.pipeline(transaction=True)
        for refresh in refreshes:
            pipe.hset(self._written_key, refresh.schema.id, 0)
        queued = 0
        calls: list[tuple[str, int]] = []  # (group, index of the script call's reply)
        replies: list[Any] = []
        for refresh in refreshes:
            schema, table = refresh.schema, refresh.rows
            if not table.num_rows:
                continue
            names = list(schema.feature_names)
            kinds = schema.kinds()
            keys = table["entity_key"].to_pylist()
            events = table["event_us"].to_pylist()
            created = [NULL_CREATED_US if c is None else c for c in table["created_us"].to_pylist()]
            values = [[_text(kinds[n], v) for v in table[n].to_pylist()] for n in names]
            for start in range(0, len(keys), self.script_batch):
                if queued >= self.max_transaction_rows:  # a huge refresh: commit this part (module docstring)
                    replies += pipe.execute()
                    pipe, queued = self.client.pipeline(transaction=True), 0
                stop = min(start + self.script_batch, len(keys))
                argv: list[Any] = [schema.id, len(names), *names]
                for i in range(start, stop):
                    argv += [events[i], created[i], *(column[i] for column in values)]
                hashes = [self._entity(schema.id, k) for k in keys[start:stop]]
                pipe.evalsha(sha, 2 + len(hashes), self._entities_key, self._written_key, *hashes, *argv)
                calls.append((schema.id, len(replies) + len(pipe.command_stack) - 1))
                queued += stop - start
        # Schemas and freshness go with the last transaction: they move only once every row is in.
        for refresh in refreshes:
            group, previous = refresh.schema.id, stored.get(refresh.schema.id, {})
            pipe.hset(self._groups_key, group, refresh.schema.to_json())
            pipe.hset(self._freshness_key, group, json.dumps({
                "watermark_us": latest_us(refresh.watermark_us, previous.get("watermark_us")),
                "latest_event_us": latest_us(refresh.latest_event_us, previous.get("latest_event_us")),
                "materialized_at_us": materialized_us,
            }))
        replies += pipe.execute()
        self._schemas = {}
        written = {r.schema.id: 0 for r in refreshes}
        for group, index in calls:
            written[group] += int(replies[index])
        return written

    # -- reading -----------------------------------------------------------------------------------------

    def read_rows(self, requests: Sequence[RowsRequest]) -> list[list[StoredRow | None]]:
        schemas = self._schemas or self.schemas()
        plan: list[tuple[list[str], dict[str, str], list[str | None]]] = []
        pipe = self.client.pipeline(transaction=True)
        for request in requests:
            schema = schemas.get(request.group)
            if schema is None:
                self._load_schemas()
                schemas = self._schemas
                schema = schemas.get(request.group)
                if schema is None:
                    raise OnlineStoreError(f"the online store holds no group {request.group!r}: "
                                           f"run `fti online materialize`")
            features = list(request.features) if request.features is not None else list(schema.feature_names)
            for key in request.keys:
                if key is not None:
                    pipe.hmget(self._entity(request.group, key), "__event_us", "__created_us", *features)
            plan.append((features, schema.kinds(), list(request.keys)))
        replies = iter(pipe.execute()) if pipe.command_stack else iter(())
        out: list[list[StoredRow | None]] = []
        for features, kinds, keys in plan:
            rows: list[StoredRow | None] = []
            for key in keys:
                if key is None:
                    rows.append(None)
                    continue
                reply = next(replies)
                if reply[0] is None:
                    rows.append(None)
                    continue
                rows.append(StoredRow(
                    event_at=from_us(int(reply[0])), created_at=from_us(int(reply[1])),
                    values={f: decode(kinds[f], v) for f, v in zip(features, reply[2:])},
                ))
            out.append(rows)
        return out
