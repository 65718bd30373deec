"""The streaming updater: the latest row per entity of windowed feature groups, recomputed per micro-batch by
the dbt models' compiled SQL (models_ml.streaming.definition) in a private in-memory DuckDB.

**State**: the staged rows (the staging models' SQL run over the batch) of the last ``retention`` of event
time, ``retention`` = twice the widest window of the models, so a chargeback still finds its transaction
(the fraud data's reports come at most 30 days after it; one reported after its transaction left the
history is counted by the batch path only). Per micro-batch only the entities the batch touches are
recomputed, from the rows that reach their latest row: the cost of an event is bounded by the history the
windows can see, never the entity's whole history. Each model runs in its latest-row form
(models_ml.streaming.latest_row: one grouped pass instead of a window pass per window expression), derived
from the same compiled SQL; a model of another shape runs as it is, which is slower and equally exact.

**Exactly once in effect**: a transaction id already held is not counted again (the batch path's rule: the
first copy wins, later ones are quarantined as duplicates), so a redelivered batch recomputes the same rows.

**Late and out-of-order events**: an event older than the newest event time seen is still applied, and its
entity's rows are recomputed over the history, which is what the batch path's incremental run does
(recompute from the earliest new event). An event older than the retention horizon cannot be recomputed
here: it is dead-lettered as ``late`` (and still landed, so the batch path counts it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from models_ml.offline.memory import ScratchSql
from models_ml.streaming.definition import CompiledModel
from models_ml.streaming.events import EVENT_TIME, Decoded
from models_ml.streaming.latest_row import NotLatestRowShape, latest_row_form

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
NAIVE = pa.timestamp("us")


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)
# staging model -> (event kind it stages, the base model its SQL reads)
STAGING = {
    "stg_fraud__transactions": ("transaction", "base_fraud__transactions"),
    "stg_fraud__chargebacks": ("chargeback", "base_fraud__chargebacks"),
}
CARD, MERCHANT = "fg_card__activity", "fg_merchant__activity"
MODELS = (*STAGING, CARD, MERCHANT)
_STATE = {"stg_fraud__transactions": "state_transactions", "stg_fraud__chargebacks": "state_chargebacks"}


class Updater:
    """Holds the retained history and recomputes touched entities; one per consumer process."""

    def __init__(self, models: Mapping[str, CompiledModel], clock: Callable[[], dt.datetime],
                 latest_row: bool = True) -> None:
        self.models = models
        self.clock = clock
        self.sql = ScratchSql()
        self.retention = 2 * max(models[m].widest_window for m in (CARD, MERCHANT))
        self.newest: dt.datetime | None = None
        self.forms: dict[str, str] = {}  # model -> "latest row" or "full": how a micro-batch evaluates it
        for staging, (kind, base) in STAGING.items():
            self.sql.put(f"new_{base}", self._base_rows(Decoded().table(kind), dt.datetime.now(UTC)))
            self.sql.execute(f'create table {_STATE[staging]} as select * from ({self._staged(staging)}) limit 0')
        # Only rows that can reach an entity's latest row: its events in (latest - widest window, latest]
        # (and, for a merchant, the transactions its chargebacks in that range refer to). Older rows change
        # nothing the store keeps, so they stay out of the computation.
        window = f"interval '{int(max(models[m].widest_window for m in (CARD, MERCHANT)).total_seconds())} seconds'"
        # ``timestamp``, as the staged times are (see _base_rows): a timestamptz here made every row's
        # comparison in the views below cast through the ICU calendar (card_transactions 33 -> 5 ms).
        self.sql.execute("create table touched_cards (card_id varchar, latest_at timestamp)")
        self.sql.execute("create table touched_merchants (merchant_id varchar, latest_at timestamp)")
        self.sql.execute(f"create view card_transactions as select t.* from state_transactions t "
                         f"join touched_cards c using (card_id) where t.transaction_at > c.latest_at - {window}")
        self.sql.execute(f"create view merchant_chargebacks as select c.* from state_chargebacks c "
                         f"join state_transactions t using (transaction_id) join touched_merchants m using (merchant_id) "
                         f"where c.reported_at > m.latest_at - {window}")
        self.sql.execute(f"create view merchant_transactions as select t.* from state_transactions t "
                         f"join touched_merchants m using (merchant_id) where t.transaction_at > m.latest_at - {window} "
                         f"or t.transaction_id in (select transaction_id from merchant_chargebacks)")
        self._queries = {
            CARD: self._latest(CARD, "card_id", {"stg_fraud__transactions": "card_transactions"}, latest_row),
            MERCHANT: self._latest(MERCHANT, "merchant_id", {"stg_fraud__transactions": "merchant_transactions",
                                                            "stg_fraud__chargebacks": "merchant_chargebacks"},
                                   latest_row),
        }

    def _staged(self, staging: str) -> str:
        return self.models[staging].bound({STAGING[staging][1]: f"new_{STAGING[staging][1]}"})

    def _latest(self, model: str, entity: str, inputs: dict[str, str], latest_row: bool) -> str:
        sql = self.models[model].bound(inputs)
        self.forms[model] = "full"
        if latest_row:
            try:
                sql, self.forms[model] = latest_row_form(sql), "latest row"
            except NotLatestRowShape as reason:
                log.warning("model %s runs in full per micro-batch (no latest-row form: %s)", model, reason)
        return f"select * from ({sql}) qualify row_number() over (partition by {entity} order by event_at desc) = 1"

    @staticmethod
    def _base_rows(rows: pa.Table, loaded_at: dt.datetime) -> pa.Table:
        """Valid raw rows shaped as the base model's (bookkeeping columns; no rule broken).

        Times are held as UTC wall-clock ``timestamp``, not ``timestamptz``: the session zone is UTC, so every
        comparison and every interval step gives the same instants, and the models' final casts
        (``event_at::timestamptz``) return them as UTC; but a window frame over ``timestamptz`` does its
        interval arithmetic through the ICU calendar, row by row, ten times slower."""
        n = rows.num_rows
        rows = pa.table({name: pc.cast(column, NAIVE) if pa.types.is_timestamp(column.type) else column
                         for name, column in zip(rows.column_names, rows.columns)})
        return (rows.append_column("loaded_at", pa.repeat(pa.scalar(_naive(loaded_at), NAIVE), n))
                .append_column("batch_id", pa.nulls(n, pa.string()))
                .append_column("record", pa.nulls(n, pa.string()))
                .append_column("rule_broken", pa.nulls(n, pa.string())))

    def seed(self, staged: Mapping[str, pa.Table]) -> None:
        """Start the history from staged rows the batch path already holds (staging model -> rows), e.g.
        the warehouse's last ``retention``; ids the stream brings again are then skipped."""
        for staging, rows in staged.items():
            if rows.num_rows == 0:
                continue
            naive = pa.table({name: pc.cast(column, NAIVE) if pa.types.is_timestamp(column.type) else column
                              for name, column in zip(rows.column_names, rows.columns)})
            self.sql.put("seed_rows", naive)
            self.sql.execute(f"insert into {_STATE[staging]} by name select * from seed_rows n "
                             f"where not exists (select 1 from {_STATE[staging]} s "
                             f"where s.transaction_id = n.transaction_id)")
            kind = STAGING[staging][0]
            latest = pc.max(rows[EVENT_TIME[kind]]).as_py()
            if latest is not None and (self.newest is None or latest > self.newest):
                self.newest = latest
        if self.newest is not None:
            self._evict()

    def horizon(self) -> dt.datetime | None:
        return None if self.newest is None else self.newest - self.retention

    def split_late(self, decoded: Decoded) -> dict[str, list[dict]]:
        """Move valid events older than the retention horizon out of ``decoded.valid``; returns them."""
        late: dict[str, list[dict]] = {}
        horizon = self.horizon()
        for kind, rows in decoded.valid.items():
            if horizon is None:
                late[kind] = []
                continue
            late[kind] = [r for r in rows if r[EVENT_TIME[kind]] < horizon]
            decoded.valid[kind] = [r for r in rows if r[EVENT_TIME[kind]] >= horizon]
        return late

    def absorb(self, decoded: Decoded) -> None:
        """Stage the batch's valid rows into the retained history (ids already held are skipped)."""
        loaded_at = self.clock()
        for staging, (kind, base) in STAGING.items():
            self.sql.put(f"new_{base}", self._base_rows(decoded.table(kind, "valid"), loaded_at))
            self.sql.execute(
                f"insert into {_STATE[staging]} select * from ({self._staged(staging)}) n "
                f"where not exists (select 1 from {_STATE[staging]} s where s.transaction_id = n.transaction_id) "
                f"qualify row_number() over (partition by n.transaction_id) = 1")
        times = [r[EVENT_TIME[k]] for k, rows in decoded.valid.items() for r in rows]
        if times and (self.newest is None or max(times) > self.newest):
            previous = self.horizon()
            self.newest = max(times)
            if previous is None or self.horizon() - previous > dt.timedelta(hours=1):
                self._evict()

    def _evict(self) -> None:
        horizon = _naive(self.horizon())
        self.sql.execute("delete from state_transactions where transaction_at < ?", [horizon])
        self.sql.execute("delete from state_chargebacks where reported_at < ?", [horizon])

    def recompute(self, decoded: Decoded) -> dict[str, pa.Table]:
        """The latest row of every card and merchant the batch's valid events touch, by the models' SQL."""
        cards = sorted({r["card_id"] for r in decoded.valid["transaction"]})
        merchants = sorted({r["merchant_id"] for r in decoded.valid["transaction"]})
        self.sql.put("batch_cards", pa.table({"card_id": pa.array(cards, pa.string())}))
        self.sql.put("batch_merchants", pa.table({"merchant_id": pa.array(merchants, pa.string())}))
        self.sql.put("batch_reports", pa.table({"transaction_id": pa.array(
            [r["transaction_id"] for r in decoded.valid["chargeback"]], pa.string())}))
        self.sql.execute("insert into batch_merchants select distinct merchant_id from state_transactions "
                         "semi join batch_reports using (transaction_id)")
        self.sql.execute("delete from touched_cards")
        self.sql.execute("insert into touched_cards select card_id, max(transaction_at) from state_transactions "
                         "semi join batch_cards using (card_id) group by card_id")
        self.sql.execute("delete from touched_merchants")
        self.sql.execute(
            "insert into touched_merchants select merchant_id, max(moment_at) from ("
            " select merchant_id, transaction_at as moment_at from state_transactions semi join batch_merchants using (merchant_id)"
            " union all"
            " select t.merchant_id, c.reported_at from state_chargebacks c join state_transactions t using (transaction_id)"
            " semi join batch_merchants using (merchant_id)"
            ") as moments group by merchant_id")
        return {model: self.sql.arrow(query) for model, query in self._queries.items()}

    def close(self) -> None:
        self.sql.close()
