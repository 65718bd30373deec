"""A seeded generator of a subscription business whose customers churn for reasons a model can learn.

A day-by-day simulation over all customers at once (numpy arrays, one loop step per day): a year of a few
thousand customers takes well under a second. The same config (seed included) gives the same tables, byte
for byte.

**The customers.** ``n_initial_customers`` subscribed during the two years before the period (they land with
its first day), ``n_new_customers`` sign up during it. Each has a plan (basic / standard / premium at a fixed
monthly price), a country, an acquisition channel, a usage habit (sessions per day, minutes per session,
drifting slowly), a payment-failure propensity (most cards rarely fail, some often) and a ticket rate.

**Why customers leave.** Every day an active customer may form the *intent* to cancel, with a hazard that
grows with recent support tickets (more so severe ones), recent failed payments, a short tenure, the basic
plan, a promo signup, a low usage habit, and a hidden propensity no feature sees. Once intent forms, usage
usually decays (about one leaver in seven keeps using as before), the customer files more tickets, and
cancels 10 to ~70 days later (a month on average); one in ten is won back and never cancels. Some of the
customers there at the start already intend to leave, as many as at any other time. Payments renew every 30 days; a failed payment is
retried after 3 and 6 days, and after three failures most customers are cancelled (``payment_failed``).
Usage also dips for ordinary reasons (holidays), so a decline is a signal, not a verdict.

**Dirty rows** (``dirty_row_share`` of each table's rows, and at least one per kind when the share is not
zero): re-sent duplicates everywhere, negative minutes of use, non-positive payment amounts, unknown ticket
severities and missing customer ids, for staging's validation rules to quarantine. ``dirty_kind`` (never
landed) says which rows are dirty and how.

All times are UTC; inside the generator they are int64 microseconds since the epoch (what DuckDB stores),
and the tables carry ``timestamp[us, tz=UTC]``. Usage is one row per customer per UTC day with at least one
session, dated by the day (``usage_date``). No event happens exactly at midnight, the instant a day's usage
becomes known.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UTC = dt.timezone.utc
MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH_DATE = dt.date(1970, 1, 1)

# name, monthly price, share of signups, churn log-hazard offset, usage multiplier
PLANS = (("basic", 9.99, 0.45, 0.35, 0.85), ("standard", 15.99, 0.35, 0.0, 1.0),
         ("premium", 22.99, 0.20, -0.30, 1.25))
PLAN_NAMES = tuple(p[0] for p in PLANS)
# name, share of customers, churn log-hazard offset
COUNTRIES = (("US", 0.40, 0.0), ("GB", 0.15, 0.05), ("DE", 0.13, -0.10), ("FR", 0.10, 0.10), ("CA", 0.08, 0.0),
             ("ES", 0.07, 0.15), ("NL", 0.07, -0.10))
CHANNELS = (("organic", 0.45, 0.0), ("paid_search", 0.25, 0.15), ("referral", 0.15, -0.35), ("promo", 0.15, 0.60))
TICKET_CATEGORIES = ("billing", "technical", "account", "content")
SEVERITIES = ("low", "medium", "high", "critical")
_SEVERITY_SHARE = np.array([0.45, 0.32, 0.17, 0.06])
_SEVERITY_WEIGHT = np.array([0.3, 0.6, 1.0, 1.6])  # how much a ticket of each severity pushes toward leaving
VOLUNTARY_REASONS = ("too_expensive", "not_using", "switched_competitor", "technical_issues", "other")
PAYMENT_FAILED = "payment_failed"
DIRTY_KINDS = {
    "customers": ("duplicate",),
    "usage": ("duplicate", "negative_minutes", "missing_customer"),
    "tickets": ("duplicate", "unknown_severity", "missing_customer"),
    "payments": ("duplicate", "non_positive_amount", "missing_customer"),
    "cancellations": ("duplicate",),
}
BILLING_CYCLE_DAYS = 30
RETRY_DAYS = 3
MAX_FAILED_ATTEMPTS = 3
PRESSURE_HALF_LIFE_DAYS = 20.0


@dataclass(frozen=True)
class ChurnConfig:
    """What to generate: customers subscribed before ``start`` and customers signing up during the ``days``."""

    seed: int = 17
    start: dt.date = dt.date(2024, 1, 1)
    days: int = 366
    n_initial_customers: int = 3_000
    n_new_customers: int = 3_000
    churn_rate_scale: float = 1.0  # multiplies every customer's hazard of deciding to leave
    dirty_row_share: float = 0.0005

    def __post_init__(self) -> None:
        if isinstance(self.start, str):
            object.__setattr__(self, "start", dt.date.fromisoformat(self.start))
        if self.days < 2 or self.n_initial_customers + self.n_new_customers < 10:
            raise ValueError("generate at least 10 customers over at least 2 days")
        if not 0.0 <= self.dirty_row_share < 0.5:
            raise ValueError("dirty_row_share must be in [0, 0.5)")

    @property
    def customers(self) -> int:
        return self.n_initial_customers + self.n_new_customers

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> dt.datetime:
        """End of the period (exclusive): the last day is ``start + days - 1``."""
        return self.start_at + dt.timedelta(days=self.days)

    @property
    def last_day(self) -> dt.date:
        return self.start + dt.timedelta(days=self.days - 1)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["start"] = self.start.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ChurnConfig:
        return cls(**data)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ChurnData:
    """The generated tables; each carries ``dirty_kind`` ('' for a clean row), which the loader leaves out."""

    config: ChurnConfig
    customers: pa.Table
    usage: pa.Table
    tickets: pa.Table
    payments: pa.Table
    cancellations: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        return {"customers": self.customers, "usage": self.usage, "tickets": self.tickets,
                "payments": self.payments, "cancellations": self.cancellations}


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pick(rng: np.random.Generator, shares, n: int) -> np.ndarray:
    p = np.asarray(shares, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _time_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Microseconds into a day, never exactly midnight (at least one second in, one second before the end)."""
    return rng.integers(MICROS_PER_SECOND, MICROS_PER_DAY - MICROS_PER_SECOND, n)


class _Events:
    """Rows under construction, appended day by day as parallel arrays."""

    def __init__(self, *names: str):
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            self.parts[name].append(np.asarray(values))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) if parts else np.empty(0) for name, parts in self.parts.items()}


def _simulate(config: ChurnConfig, rng: np.random.Generator):
    n, days = config.customers, config.days
    initial = np.arange(n) < config.n_initial_customers
    signup_day = np.where(initial, -rng.integers(1, 731, n), rng.integers(0, days, n))
    signup_micro = _time_of_day(rng, n)
    order = np.lexsort((signup_micro, signup_day))  # customer ids follow signup order
    signup_day, signup_micro = signup_day[order], signup_micro[order]
    start = _micros(config.start_at)
    signup_at = start + signup_day * MICROS_PER_DAY + signup_micro

    plan = _pick(rng, [p[2] for p in PLANS], n)
    country = _pick(rng, [c[1] for c in COUNTRIES], n)
    channel = _pick(rng, [c[1] for c in CHANNELS], n)
    habit = np.exp(rng.normal(np.log(1.4), 0.6, n)) * np.array([p[4] for p in PLANS])[plan]  # sessions per day
    minutes_per_session = np.exp(rng.normal(np.log(22.0), 0.4, n))
    risky_card = rng.uniform(0, 1, n) < 0.18
    fail_probability = np.where(risky_card, rng.uniform(0.10, 0.40, n), 0.015)
    ticket_rate = 0.006 * rng.gamma(1.2, 1 / 1.2, n)
    static_hazard = (
        np.log(0.0009 * config.churn_rate_scale)
        + np.array([p[3] for p in PLANS])[plan]
        + np.array([c[2] for c in COUNTRIES])[country]
        + np.array([c[2] for c in CHANNELS])[channel]
        - 0.45 * (np.log(habit) - np.log(1.4))
        + rng.normal(0.0, 0.4, n)  # what no feature sees
    )

    # Billing: every 30 days from signup; the first renewal 30 days after it.
    anchor = signup_day + BILLING_CYCLE_DAYS * np.maximum(1, -(signup_day // BILLING_CYCLE_DAYS))
    next_attempt = anchor.copy()
    failed_attempts = np.zeros(n, np.int64)

    cancelled = np.zeros(n, bool)
    cancel_day = np.full(n, -1, np.int64)  # scheduled cancellation (intent or payment), -1: none
    cancel_reason = np.full(n, -1, np.int64)  # index into VOLUNTARY_REASONS, or len() for payment_failed
    intends = np.zeros(n, bool)
    intent_day = np.zeros(n, np.int64)  # when the intent formed (before the period for some initial ones)
    decay_days = np.ones(n)
    silent = np.zeros(n, bool)
    won_back = np.zeros(n, bool)
    holiday_until = np.full(n, -1, np.int64)
    drift = np.zeros(n)
    ticket_pressure = np.zeros(n)
    fail_pressure = np.zeros(n)
    decay = 0.5 ** (1 / PRESSURE_HALF_LIFE_DAYS)

    def intend_to_leave(who: np.ndarray, day) -> None:
        k = len(who)
        intends[who], intent_day[who] = True, day
        cancel_day[who] = np.maximum(day + 10 + np.round(rng.gamma(2.0, 10.0, k)).astype(np.int64), 0)
        cancel_reason[who] = _pick(rng, [0.3, 0.3, 0.2, 0.1, 0.1], k)
        decay_days[who] = rng.uniform(3.0, 12.0, k)
        silent[who] = rng.uniform(0, 1, k) < 0.15
        won_back[who] = rng.uniform(0, 1, k) < 0.10

    # The initial customers are mid-life: about as many already intend to leave as would at any time.
    already = np.flatnonzero(initial & (rng.uniform(0, 1, n) < min(0.5, 0.05 * config.churn_rate_scale)))
    intend_to_leave(already, -rng.integers(1, 31, len(already)))

    usage = _Events("customer", "day", "sessions", "minutes")
    payments = _Events("customer", "at", "amount", "succeeded")
    tickets = _Events("customer", "at", "category", "severity")
    cancellations = _Events("customer", "at", "reason")
    price = np.array([p[1] for p in PLANS])[plan]

    for day in range(days):
        day_start = start + day * MICROS_PER_DAY
        alive = (signup_day <= day) & ~cancelled

        # Cancellations scheduled today (won-back customers drop their intent instead).
        due = alive & (cancel_day == day)
        saved = due & won_back & (cancel_reason < len(VOLUNTARY_REASONS))
        leaving = np.flatnonzero(due & ~saved)
        if len(leaving):
            cancellations.add(customer=leaving, at=day_start + _time_of_day(rng, len(leaving)),
                              reason=cancel_reason[leaving])
            cancelled[leaving] = True
            alive[leaving] = False
        intends[saved], cancel_day[saved], won_back[saved] = False, -1, False
        tenure = day - signup_day

        # Renewals and retries.
        paying = np.flatnonzero(alive & (next_attempt == day))
        if len(paying):
            retry = failed_attempts[paying] > 0
            p_fail = np.where(retry, np.where(failed_attempts[paying] >= MAX_FAILED_ATTEMPTS, 0.02, 0.55),
                              fail_probability[paying])
            failed = rng.uniform(0, 1, len(paying)) < p_fail
            payments.add(customer=paying, at=day_start + _time_of_day(rng, len(paying)), amount=price[paying],
                         succeeded=~failed)
            ok, bad = paying[~failed], paying[failed]
            anchor[ok] += BILLING_CYCLE_DAYS
            next_attempt[ok], failed_attempts[ok] = anchor[ok], 0
            failed_attempts[bad] += 1
            fail_pressure[bad] += 1.0
            next_attempt[bad] = day + RETRY_DAYS
            exhausted = bad[failed_attempts[bad] == MAX_FAILED_ATTEMPTS]
            cut_off = exhausted[(rng.uniform(0, 1, len(exhausted)) < 0.75) & (cancel_day[exhausted] < 0)]
            cancel_day[cut_off], cancel_reason[cut_off] = day + 1, len(VOLUNTARY_REASONS)
            won_back[cut_off] = False

        # Support tickets: more while intending to leave, and after failed payments (about billing).
        intending = alive & intends & ~silent
        billing_trouble = fail_pressure > 0.5
        rate = ticket_rate * (1 + 3.0 * intending) * (1 + 2.5 * billing_trouble)
        filing = np.flatnonzero(alive & (rng.uniform(0, 1, n) < rate))
        if len(filing):
            severity = _pick(rng, _SEVERITY_SHARE, len(filing))
            category = np.where(billing_trouble[filing] & (rng.uniform(0, 1, len(filing)) < 0.6), 0,
                                _pick(rng, [0.2, 0.45, 0.2, 0.15], len(filing)))
            tickets.add(customer=filing, at=day_start + _time_of_day(rng, len(filing)), category=category,
                        severity=severity)
            np.add.at(ticket_pressure, filing, _SEVERITY_WEIGHT[severity])

        # Deciding to leave.
        hazard = np.exp(static_hazard + 0.9 * np.exp(-np.maximum(tenure, 0) / 60.0)
                        + 0.35 * ticket_pressure + 0.6 * fail_pressure)
        onset = np.flatnonzero(alive & ~intends & (cancel_day < 0) & (rng.uniform(0, 1, n) < hazard))
        if len(onset):
            intend_to_leave(onset, day)

        # Usage of the day: the habit, drifting; decaying with intent; almost nothing on holiday.
        going = alive & (holiday_until < day) & (rng.uniform(0, 1, n) < 1 / 240)
        holiday_until[going] = day + rng.integers(4, 15, int(going.sum()))
        drift += rng.normal(0.0, 0.03, n) - 0.02 * drift
        multiplier = np.exp(drift)
        leaving_soon = intends & ~silent
        multiplier = np.where(leaving_soon, multiplier * np.maximum(0.04, np.exp(-(day - intent_day) / decay_days)),
                              multiplier)
        multiplier = np.where(holiday_until >= day, multiplier * 0.05, multiplier)
        weekday = (config.start + dt.timedelta(days=day)).weekday()
        first_day = np.where(signup_day == day, 1 - signup_micro / MICROS_PER_DAY, 1.0)
        expected = habit * multiplier * (1.3 if weekday >= 5 else 1.0) * first_day
        sessions = np.where(alive, rng.poisson(expected), 0)
        using = np.flatnonzero(sessions > 0)
        if len(using):
            minutes = np.clip(np.round(
                sessions[using] * minutes_per_session[using] * np.exp(rng.normal(0, 0.35, len(using)))),
                              sessions[using], 960)
            usage.add(customer=using, day=np.full(len(using), day), sessions=sessions[using],
                      minutes=minutes.astype(np.int64))

        ticket_pressure *= decay
        fail_pressure *= decay

    customers = {"signup_at": signup_at, "plan": plan, "country": country, "channel": channel, "price": price}
    return customers, usage.arrays(), payments.arrays(), tickets.arrays(), cancellations.arrays()


def _with_dirty_rows(table: pa.Table, kinds: tuple[str, ...], share: float, key: str,
                     rng: np.random.Generator) -> pa.Table:
    """``table`` with dirty rows: re-sent copies of rows appended (``duplicate``) and rows corrupted in place
    (the record arrived broken). Sorted back by ``key`` (the time the loader batches by), copies after their
    originals."""
    n = table.num_rows
    n_dirty = min(n, max(len(kinds), int(round(share * n)))) if share > 0 and n else 0
    chosen = np.sort(rng.choice(n, size=n_dirty, replace=False)) if n_dirty else np.empty(0, np.int64)
    kind = np.array(kinds, dtype=object)[np.arange(n_dirty) % len(kinds)]
    rng.shuffle(kind)
    dirty = np.full(n, "", dtype=object)
    columns = {name: table[name].combine_chunks() for name in table.column_names}
    corrupt = {k: chosen[kind == k] for k in kinds if k != "duplicate"}
    for k, rows in corrupt.items():
        mask = np.zeros(n, bool)
        mask[rows] = True
        dirty[rows] = k
        flags = pa.array(mask)
        if k == "missing_customer":
            columns["customer_id"] = pc.if_else(flags, pa.nulls(n, pa.string()), columns["customer_id"])
        elif k == "negative_minutes":
            columns["minutes_used"] = pc.if_else(flags, pc.negate(columns["minutes_used"]), columns["minutes_used"])
        elif k == "non_positive_amount":
            columns["amount"] = pc.if_else(flags, pc.negate(columns["amount"]), columns["amount"])
        elif k == "unknown_severity":
            columns["severity"] = pc.if_else(flags, pa.scalar("sev-9"), columns["severity"])
    marked = pa.table({**columns, "dirty_kind": pa.array(dirty, pa.string())})
    copies = chosen[kind == "duplicate"]
    resent = table.take(pa.array(copies)).append_column("dirty_kind", pa.array(["duplicate"] * len(copies),
                                                                                 pa.string()))
    combined = pa.concat_tables([marked, resent])
    position = np.concatenate([np.arange(n), copies]).astype(np.float64)
    position[n:] += 0.5  # a copy right after its original
    column = combined[key].combine_chunks()
    time = pc.cast(column, pa.int32() if pa.types.is_date(column.type) else pa.int64()).to_numpy()
    return combined.take(pa.array(np.lexsort((position, time))))


def generate(config: ChurnConfig | None = None) -> ChurnData:
    """Generate customers, daily usage, support tickets, payments and cancellations, each sorted by time."""
    config = config or ChurnConfig()
    rng = np.random.default_rng(config.seed)
    customer, usage, payments, tickets, cancellations = _simulate(config, rng)
    n = config.customers
    customer_ids = _ids("cust_", np.arange(1, n + 1), 6)

    customers = pa.table({
        "customer_id": customer_ids,
        "plan": pa.array(np.array(PLAN_NAMES, dtype=object)[customer["plan"]], pa.string()),
        "monthly_price": pa.array(customer["price"], pa.float64()),
        "country": pa.array(np.array([c[0] for c in COUNTRIES], dtype=object)[customer["country"]], pa.string()),
        "signup_channel": pa.array(np.array([c[0] for c in CHANNELS], dtype=object)[customer["channel"]],
                                   pa.string()),
        "signup_at": pa.array(customer["signup_at"], TIMESTAMP),
    })
    start_day = (config.start - _EPOCH_DATE).days
    order = np.lexsort((usage["customer"], usage["day"]))
    usage_table = pa.table({
        "customer_id": customer_ids.take(pa.array(usage["customer"][order].astype(np.int64))),
        "usage_date": pa.array((start_day + usage["day"][order]).astype(np.int32), pa.int32()).cast(pa.date32()),
        "sessions": pa.array(usage["sessions"][order].astype(np.int64), pa.int64()),
        "minutes_used": pa.array(usage["minutes"][order].astype(np.int64), pa.int64()),
    })
    order = np.lexsort((tickets["customer"], tickets["at"]))
    tickets_table = pa.table({
        "ticket_id": _ids("ticket_", np.arange(1, len(order) + 1), 7),
        "customer_id": customer_ids.take(pa.array(tickets["customer"][order].astype(np.int64))),
        "opened_at": pa.array(tickets["at"][order].astype(np.int64), TIMESTAMP),
        "category": pa.array(np.array(TICKET_CATEGORIES, dtype=object)[tickets["category"][order].astype(int)],
                             pa.string()),
        "severity": pa.array(np.array(SEVERITIES, dtype=object)[tickets["severity"][order].astype(int)], pa.string()),
    })
    order = np.lexsort((payments["customer"], payments["at"]))
    payments_table = pa.table({
        "payment_id": _ids("pay_", np.arange(1, len(order) + 1), 7),
        "customer_id": customer_ids.take(pa.array(payments["customer"][order].astype(np.int64))),
        "attempted_at": pa.array(payments["at"][order].astype(np.int64), TIMESTAMP),
        "amount": pa.array(payments["amount"][order].astype(np.float64), pa.float64()),
        "succeeded": pa.array(payments["succeeded"][order].astype(bool)),
    })
    order = np.lexsort((cancellations["customer"], cancellations["at"]))
    reasons = np.array([*VOLUNTARY_REASONS, PAYMENT_FAILED], dtype=object)
    cancellations_table = pa.table({
        "customer_id": customer_ids.take(pa.array(cancellations["customer"][order].astype(np.int64))),
        "cancelled_at": pa.array(cancellations["at"][order].astype(np.int64), TIMESTAMP),
        "reason": pa.array(reasons[cancellations["reason"][order].astype(int)], pa.string()),
    })

    share = config.dirty_row_share
    times = {"customers": "signup_at", "usage": "usage_date", "tickets": "opened_at", "payments": "attempted_at",
             "cancellations": "cancelled_at"}
    clean = {"customers": customers, "usage": usage_table, "tickets": tickets_table, "payments": payments_table,
             "cancellations": cancellations_table}
    dirty = {name: _with_dirty_rows(table, DIRTY_KINDS[name], share, times[name], rng)
             for name, table in clean.items()}
    return ChurnData(config, **dirty)
